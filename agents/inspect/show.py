"""``python -m agents.inspect.show --db PATH --record ID``: one record's search tree, from the store.

    python -m agents.inspect.show --db runs/x.db --record sea           the tree, texts cut to a line
    python -m agents.inspect.show --db runs/x.db --record sea --full    every text whole
    python -m agents.inspect.show --db runs/x.db --record sea --json    the same as JSON

The draft (and the attempts rejected before it), then each step: the segment it rewrote, every
candidate with its score or the reason it was rejected, its tokens and latency, the winner, and
the best score after the step; then the candidates of a step not yet completed, if any.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import TYPE_CHECKING, Any

from rich.markup import escape

from agents.inspect.stored import add_db_option, open_run
from store import Node, Progress, Record, StoreError

if TYPE_CHECKING:
    from rich.tree import Tree

# rich's console and tree are imported where a screen is drawn: --json starts without them.

LINE = 100  # characters of a text shown without --full


def node_data(n: Node) -> dict[str, Any]:
    return {"id": n.id, "idx": n.idx, "text": n.text, "raw": n.raw, "score": n.score, "rejected": n.rejected,
            "finish_reason": n.finish_reason, "prompt_tokens": n.prompt_tokens,
            "completion_tokens": n.completion_tokens, "latency_s": n.latency_s}


def tree_data(rec: Record, progress: Progress) -> dict[str, Any]:
    """The record and its whole search, as plain data."""
    steps = [{"step": st.step, "segment": st.segment, "kept": st.kept, "chosen_node_id": st.chosen_node_id,
              "best_after": st.best_after, "candidates": [node_data(n) for n in progress.candidates.get(st.step, [])]}
             for st in progress.steps]
    done = {st.step for st in progress.steps}
    return {
        "id": rec.key, "status": rec.status.value, "error": rec.error, "question": rec.question,
        "answer": rec.answer, "initial_score": rec.initial_score, "final_score": rec.final_score,
        "drafts": [node_data(d) for d in progress.drafts],
        "steps": steps,
        "open_steps": [{"step": i, "candidates": [node_data(n) for n in nodes]}
                       for i, nodes in sorted(progress.candidates.items()) if i not in done],
        "final_thinking": rec.final_thinking,
    }


def _text(s: str | None, full: bool) -> str:
    if s is None:
        return "-"
    if full:
        return escape(s)
    one = " ".join(s.split())
    return escape(one if len(one) <= LINE else one[: LINE - 1] + "…")


def _score(x: float | None) -> str:
    return "-" if x is None else f"{x:.4f}"


def _node_line(n: dict[str, Any], label: str, chosen: bool = False) -> str:
    cost = f"{n['completion_tokens'] or 0} tokens, {n['latency_s'] or 0:.1f} s"
    if n["rejected"]:
        return f"{label}: [red]rejected[/]: {escape(n['rejected'])} [dim]({cost})[/]"
    mark = "  [bold green]✓ chosen[/]" if chosen else ""
    return f"{label}: score {_score(n['score'])}{mark} [dim]({cost})[/]"


def render(data: dict[str, Any], full: bool = False) -> Tree:
    from rich.tree import Tree

    head = (f"[bold]record {escape(data['id'])}[/] · {data['status']} · score {_score(data['initial_score'])} → "
            f"{_score(data['final_score'])} · {len(data['steps'])} steps "
            f"({sum(1 for s in data['steps'] if s['chosen_node_id'] is not None)} accepted)")
    root = Tree(head + (f"\n[red]{escape(data['error'])}[/]" if data["error"] else ""))
    root.add(f"[bold]question[/]: {_text(data['question'], full)}")
    for i, d in enumerate(data["drafts"]):
        node = root.add(_node_line(d, f"[bold]draft[/] (attempt {i + 1})"))
        node.add(_text(d["text"] if d["text"] is not None else d["raw"], full))
    for st in data["steps"]:
        node = root.add(f"[bold]step {st['step']}[/] · best after {_score(st['best_after'])}"
                        + ("" if st["chosen_node_id"] is not None else " · [yellow]kept the segment[/]"))
        node.add(f"segment: {_text(st['segment'], full)}")
        for c in st["candidates"]:
            node.add(_node_line(c, f"candidate {c['idx']}", c["id"] == st["chosen_node_id"])).add(
                _text(c["text"] if c["text"] is not None else c["raw"], full))
    for st in data["open_steps"]:
        node = root.add(f"[bold]step {st['step']}[/] · [cyan]not completed[/]")
        for c in st["candidates"]:
            node.add(_node_line(c, f"candidate {c['idx']}")).add(_text(c["text"] or c["raw"], full))
    if data["final_thinking"] is not None:
        root.add(f"[bold]final thinking[/] ({len(data['final_thinking'])} characters): "
                 f"{_text(data['final_thinking'], full)}")
    return root


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m agents.inspect.show", description="One record's search tree, from the store.")
    add_db_option(p)
    p.add_argument("--record", required=True, help="the record's id (its input id, or its position)")
    p.add_argument("--full", action="store_true", help="print every text whole")
    p.add_argument("--json", action="store_true", help="print the same as JSON")
    args = p.parse_args(argv)
    try:
        store, run_id = open_run(args.db)
        rec = store.record_by_key(run_id, args.record)
        if rec is None:
            print(f"reer: error: {args.db} holds no record {args.record!r}", file=sys.stderr)
            return 2
        data = tree_data(rec, store.load_progress(rec.id))
    except StoreError as exc:
        print(f"reer: error: {exc}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(data, ensure_ascii=False, indent=2))
    else:
        from rich.console import Console

        Console().print(render(data, args.full))
    return 0


if __name__ == "__main__":
    sys.exit(main())
