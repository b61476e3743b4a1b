"""``python -m agents.inspect.report --db PATH --out DIR``: a run as one HTML page of plots, from its store.

    python -m agents.inspect.report --db runs/x.db --out runs/x-report

writes ``DIR/report.html`` (self-contained: the plots are inside it) and each plot as a PNG
beside it: the scores before and after, the score by step (median and quartiles), how often a
step improves, the thinking's length before and after, tokens and time per record, the records
without a result by reason; then the best and worst records, each linked to its search tree.
"""

from __future__ import annotations

import argparse
import base64
import html
import io
import statistics
import sys
import textwrap
from collections import defaultdict
from pathlib import Path
from typing import Any

from rich.console import Console

from agents.errors import ConfigError
from agents.inspect import show, status
from agents.inspect.stored import add_db_option, open_run
from agents.options import add_price_options, prices_from_args
from store import Store, StoreError

TABLE_ROWS = 10  # best and worst records listed


def gather(store: Store, run_id: int) -> dict[str, Any]:
    """Per record and per step, what the plots need, from the store's aggregate queries: no
    text is read, and what is held is a few numbers a record. The search trees are read later,
    for the records the page lists only (``trees``)."""
    records = [vars(r) for r in store.record_numbers(run_id)]
    by_step: dict[int, list[tuple[float, bool]]] = defaultdict(list)
    for step, best_after, accepted in store.step_numbers(run_id):
        by_step[step].append((best_after, bool(accepted)))
    return {"records": records, "by_step": dict(sorted(by_step.items()))}


def picked(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The best and worst records by final score, the ones the page lists with their trees."""
    ranked = sorted(records, key=lambda x: x["final"])
    return ranked[:TABLE_ROWS] + [x for x in ranked[-TABLE_ROWS:] if x not in ranked[:TABLE_ROWS]]


def trees(store: Store, run_id: int, keys: list[str]) -> dict[str, dict[str, Any]]:
    """The search trees of the listed records, by key."""
    out = {}
    for key in keys:
        rec = store.record_by_key(run_id, key)
        out[key] = show.tree_data(rec, store.load_progress(rec.id))
    return out


def plots(data: dict[str, Any], problems: list[dict[str, Any]]) -> dict[str, bytes]:
    """Each plot as PNG bytes, by name."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    recs, by_step = data["records"], data["by_step"]
    out: dict[str, bytes] = {}

    def save(name: str, fig) -> None:
        buf = io.BytesIO()
        fig.tight_layout()
        fig.savefig(buf, format="png", dpi=100)
        plt.close(fig)
        out[name] = buf.getvalue()

    fig, ax = plt.subplots(figsize=(6, 3.6))
    ax.hist([[r["initial"] for r in recs], [r["final"] for r in recs]], bins=20, label=["initial", "final"])
    ax.set(title="Score per record (lower is better)", xlabel="clipped mean NLL of the answer", ylabel="records")
    ax.legend()
    save("scores", fig)

    steps = list(by_step)
    q = [statistics.quantiles([b for b, _ in by_step[s]], n=4) if len(by_step[s]) > 1 else [by_step[s][0][0]] * 3
         for s in steps]
    fig, ax = plt.subplots(figsize=(6, 3.6))
    ax.plot(steps, [x[1] for x in q], marker="o", label="median")
    ax.fill_between(steps, [x[0] for x in q], [x[2] for x in q], alpha=0.3, label="quartiles")
    ax.set(title="Best score after each step", xlabel="step", ylabel="score")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.legend()
    save("score_by_step", fig)

    fig, ax = plt.subplots(figsize=(6, 3.6))
    ax.bar(steps, [sum(a for _, a in by_step[s]) / len(by_step[s]) for s in steps])
    ax.set(title="Share of steps that improved (a candidate was kept)", xlabel="step", ylabel="share", ylim=(0, 1))
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    save("acceptance_by_step", fig)

    fig, ax = plt.subplots(figsize=(6, 3.6))
    ax.hist([[r["draft_chars"] for r in recs], [r["final_chars"] for r in recs]], bins=20, label=["draft", "final"])
    ax.set(title="Thinking length", xlabel="characters", ylabel="records")
    ax.legend()
    save("thinking_length", fig)

    fig, ax = plt.subplots(figsize=(6, 3.6))
    ax.scatter([r["tokens"] for r in recs], [r["seconds"] for r in recs], s=12)
    ax.set(title="Per record: generated tokens and generation time", xlabel="completion tokens",
           ylabel="seconds (sum of requests)")
    save("tokens_and_time", fig)

    save("failures_by_reason", _failures_figure(plt, problems))
    return out


def _failures_figure(plt, problems: list[dict[str, Any]]):
    from matplotlib.ticker import MaxNLocator

    fig, ax = plt.subplots(figsize=(8, max(2.4, 0.8 * len(problems) + 1)))
    if problems:  # a reason is long: wrapped, so that the bars keep the room
        labels = [textwrap.fill(p["reason"], 38, max_lines=3, placeholder=" …") for p in problems]
        ax.barh(labels[::-1], [p["count"] for p in problems][::-1])
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    else:
        ax.text(0.5, 0.5, "every record has a result", ha="center", va="center")
        ax.set_axis_off()
    ax.set(title="Records without a result, by reason")
    return fig


def render_html(snap: dict[str, Any], listed: list[dict[str, Any]], tree_of: dict[str, dict[str, Any]],
                images: dict[str, bytes], db: str) -> str:
    r = snap["records"]
    score = lambda x: "-" if x is None else f"{x:.4f}"  # noqa: E731
    rows = "".join(
        f"<tr><td><a href='#rec-{html.escape(x['key'])}'>{html.escape(x['key'])}</a></td><td>{score(x['initial'])}</td>"
        f"<td>{score(x['final'])}</td><td>{score(x['initial'] - x['final'])}</td><td>{x['final_chars']}</td></tr>"
        for x in listed)
    figures = "".join(f"<figure><img alt='{name}' src='data:image/png;base64,{base64.b64encode(png).decode()}'>"
                      f"</figure>" for name, png in images.items())
    sections = "".join(f"<section id='rec-{html.escape(x['key'])}'><h3>record {html.escape(x['key'])}</h3>"
                    f"{_tree_html(tree_of[x['key']])}</section>" for x in listed)
    cost = f", cost ${snap['cost_usd']:,.2f}" if snap["cost_usd"] is not None else ""
    acc = f" ({snap['acceptance']:.0%} improved)" if snap["acceptance"] is not None else ""
    return f"""<!doctype html><html><head><meta charset="utf-8"><title>reer report: {html.escape(db)}</title>
<style>body{{font-family:sans-serif;max-width:1300px;margin:2em auto;color:#222}}
figure{{display:inline-block;margin:.5em}} img{{max-width:600px}} table{{border-collapse:collapse}}
td,th{{border:1px solid #ccc;padding:.25em .6em;text-align:right}} td:first-child{{text-align:left}}
pre{{font-size:12px;overflow-x:auto;background:#fafafa;padding:.5em}}</style></head><body>
<h1>reer report</h1>
<p>{html.escape(db)} · run {snap['run']} · input {html.escape(snap['input'])} · last write {snap['updated_at'] or '-'}</p>
<p><b>records</b> {r['total']}: done {r['done']}, failed {r['failed']}, skipped {r['skipped']},
running {r['running']}, pending {r['pending']} · <b>steps</b> {snap['steps']}{acc} ·
<b>mean score</b> {score(snap['mean_score']['initial'])} → {score(snap['mean_score']['final'])} ·
<b>tokens</b> {snap['tokens']['prompt']} prompt, {snap['tokens']['completion']} completion{cost}</p>
{figures}
<h2>Best and worst records (by final score)</h2>
<table><tr><th>record</th><th>initial</th><th>final</th><th>improvement</th><th>thinking chars</th></tr>{rows}</table>
<h2>Their search trees</h2>{sections}
</body></html>
"""


def _tree_html(tree: dict[str, Any]) -> str:
    console = Console(record=True, width=140, file=io.StringIO())
    console.print(show.render(tree))
    return console.export_html(inline_styles=True, code_format="<pre>{code}</pre>")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m agents.inspect.report", description="A run as one HTML page of plots.")
    add_db_option(p)
    p.add_argument("--out", required=True, type=Path, help="the folder to write report.html and the plots to")
    add_price_options(p)
    args = p.parse_args(argv)
    try:
        prices = prices_from_args(args)
        store, run_id = open_run(args.db)
        snap = status.snapshot(store, run_id, prices)
        data = gather(store, run_id)
    except (StoreError, ConfigError) as exc:
        print(f"reer: error: {exc}", file=sys.stderr)
        return 2
    if not data["records"]:
        print(f"reer: error: {args.db} holds no done record to report on yet", file=sys.stderr)
        return 2
    images = plots(data, snap["problems"])
    args.out.mkdir(parents=True, exist_ok=True)
    for name, png in images.items():
        (args.out / f"{name}.png").write_bytes(png)
    listed = picked(data["records"])
    try:
        tree_of = trees(store, run_id, [x["key"] for x in listed])
    except StoreError as exc:
        print(f"reer: error: {exc}", file=sys.stderr)
        return 2
    (args.out / "report.html").write_text(render_html(snap, listed, tree_of, images, args.db), encoding="utf-8")
    print(f"wrote {args.out / 'report.html'} ({len(images)} plots, {len(data['records'])} done records)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
