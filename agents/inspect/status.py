"""``python -m agents.inspect.status --db PATH``: a run at a glance, from its store alone.

    python -m agents.inspect.status --db runs/x.db           the numbers, failures by reason, the config
    python -m agents.inspect.status --db URL --watch         follow a run in progress, here or elsewhere
    python -m agents.inspect.status --db runs/x.db --json    the same as JSON

It reads the store and nothing else, so it works on a run that is not running, or one running
on another machine against the same PostgreSQL database.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from collections import Counter
from typing import TYPE_CHECKING, Any

from agents.config import Prices
from agents.errors import ConfigError
from agents.inspect.stored import add_db_option, open_run
from agents.options import add_price_options, prices_from_args
from store import Problem, RecordStatus, Store, StoreError

if TYPE_CHECKING:
    from rich.console import Group

# rich is imported where a screen is drawn: --json and a log's lines start without it (a
# status polled every few seconds is mostly its start-up).


def reason_groups(problems: list[Problem]) -> list[dict[str, Any]]:
    """Records that ended without a result, grouped by reason (numbers folded to N), most
    common first, each with a count and an example record."""
    groups: Counter[str] = Counter()
    examples: dict[str, str] = {}
    for rec in problems:
        reason = f"{rec.status.value}: " + re.sub(r"\d+", "N", rec.error or "no reason recorded")
        groups[reason] += 1
        examples.setdefault(reason, rec.key)
    return [{"reason": reason, "count": n, "example": examples[reason]} for reason, n in groups.most_common()]


def reasons_summary(problems: list[Problem]) -> list[str]:
    return [f"{g['count']} x {g['reason']} (e.g. record {g['example']})" for g in reason_groups(problems)]


def snapshot(store: Store, run_id: int, prices: Prices | None = None) -> dict[str, Any]:
    """Everything ``status`` shows, as plain data; the cost with ``prices``."""
    run = store.run(run_id)
    ov = store.overview(run_id)
    counts = {st.value: ov.counts.get(st, 0) for st in RecordStatus}
    return {
        "run": run_id, "input": run.input_path, "created_at": run.created_at.isoformat(),
        "updated_at": ov.updated_at.isoformat() if ov.updated_at else None,
        "records": {"total": sum(n for st, n in counts.items() if st != "removed"), **counts},
        "steps": ov.steps, "accepted_steps": ov.accepted,
        "acceptance": round(ov.accepted / ov.steps, 4) if ov.steps else None,
        "mean_score": {"initial": ov.mean_initial, "final": ov.mean_final},
        "generations": {"stored": ov.nodes, "rejected": ov.rejected},
        "tokens": {"prompt": ov.prompt_tokens, "completion": ov.completion_tokens},
        "cost_usd": round(prices.cost(ov.prompt_tokens, ov.completion_tokens), 6) if prices else None,
        "problems": reason_groups(store.unfinished_problems(run_id)),
        "workers": store.live_workers(run_id),
        "config": run.config, "history": run.history,
    }


def _score(x: float | None) -> str:
    return "-" if x is None else f"{x:.3f}"


def render(snap: dict[str, Any], db: str, with_config: bool = True) -> Group:
    from rich.console import Group
    from rich.json import JSON
    from rich.table import Table

    r = snap["records"]
    t = Table.grid(padding=(0, 2))
    t.add_column(style="bold")
    t.add_column()
    t.add_row("run", f"{snap['run']} in {db}, input {snap['input']}, started {snap['created_at'][:19]}, "
                     f"last write {(snap['updated_at'] or '-')[:19]}")
    finished = r["done"] + r["failed"] + r["skipped"]
    t.add_row("records", f"{finished}/{r['total']}  done [green]{r['done']}[/]  failed [red]{r['failed']}[/]  "
                         f"skipped [yellow]{r['skipped']}[/]  running [cyan]{r['running']}[/]  pending {r['pending']}"
                         + (f"  removed {r['removed']}" if r["removed"] else ""))
    acc = snap["acceptance"]
    t.add_row("steps", f"{snap['steps']}  accepted {snap['accepted_steps']}"
                       + (f" ({acc:.0%})" if acc is not None else ""))
    t.add_row("mean score", f"{_score(snap['mean_score']['initial'])} → {_score(snap['mean_score']['final'])}"
                            "  (done records; clipped NLL of the answer, lower is better)")
    g, tok = snap["generations"], snap["tokens"]
    t.add_row("generations", f"{g['stored']} stored, {g['rejected']} rejected; "
                             f"tokens {tok['prompt']} prompt, {tok['completion']} completion"
                             + (f"; cost ${snap['cost_usd']:,.2f}" if snap["cost_usd"] is not None else ""))
    if snap["workers"]:
        t.add_row("workers", f"{len(snap['workers'])} live: " + "; ".join(
            f"{w['name']} (holds {w['holds']}, finished {w['finished']})" for w in snap["workers"]))
    parts: list[Any] = [t]
    if snap["problems"]:
        p = Table(title="without a result, by reason", title_justify="left", show_edge=False)
        p.add_column("count", justify="right")
        p.add_column("reason")
        p.add_column("e.g. record")
        for grp in snap["problems"]:
            p.add_row(str(grp["count"]), grp["reason"], grp["example"])
        parts.append(p)
    if with_config:
        parts += ["[bold]config[/] (--json gives the prompts' texts)", JSON.from_data(_brief(snap["config"]))]
        if snap["history"]:
            parts.append(f"[bold]forced changes[/]: {len(snap['history'])} (the last at "
                         f"{snap['history'][-1]['at'][:19]}: {', '.join(snap['history'][-1]['changes']) or 'config'})")
    return Group(*parts)


def _brief(config: dict[str, Any]) -> dict[str, Any]:
    """The config with each prompt's text shown by its length: the settings fit a screen."""
    prompts = config.get("prompts")
    if not isinstance(prompts, dict):
        return config
    return {**config, "prompts": {k: f"{len(v)} characters" if isinstance(v, str) else v for k, v in prompts.items()}}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m agents.inspect.status", description="A run at a glance, from its store.")
    add_db_option(p)
    p.add_argument("--json", action="store_true", help="print the same as JSON")
    add_price_options(p)
    p.add_argument("--watch", type=float, nargs="?", const=2.0, default=None, metavar="SECONDS",
                   help="follow the run, refreshing every SECONDS (2); Ctrl-C to stop")
    args = p.parse_args(argv)
    try:
        prices = prices_from_args(args)
        store, run_id = open_run(args.db)
        if args.json:
            print(json.dumps(snapshot(store, run_id, prices), ensure_ascii=False, indent=2))
        elif args.watch:
            _watch(store, run_id, args.db, args.watch, prices)
        else:
            from rich.console import Console

            Console().print(render(snapshot(store, run_id, prices), args.db))
    except (StoreError, ConfigError) as exc:
        print(f"reer: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        pass
    return 0


def _watch(store: Store, run_id: int, db: str, every_s: float, prices: Prices | None) -> None:
    from rich.console import Console
    from rich.live import Live

    console = Console()
    if not console.is_terminal:  # a log: one line per refresh
        while True:
            snap = snapshot(store, run_id, prices)
            r = snap["records"]
            print(f"{time.strftime('%H:%M:%S')} done {r['done']}, failed {r['failed']}, skipped {r['skipped']}, "
                  f"running {r['running']}, pending {r['pending']} of {r['total']} | steps {snap['steps']} "
                  f"(accepted {snap['accepted_steps']}) | workers {len(snap['workers'])}", flush=True)
            time.sleep(every_s)
    with Live(render(snapshot(store, run_id, prices), db, with_config=False), console=console, auto_refresh=False) as live:
        while True:
            time.sleep(every_s)
            live.update(render(snapshot(store, run_id, prices), db, with_config=False), refresh=True)


if __name__ == "__main__":
    sys.exit(main())
