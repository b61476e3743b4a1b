"""``reer``: one command for reer's entry points, each also runnable as a module.

    reer run ARGS      = python -m agents.run ARGS      synthesize thinking for an input file
    reer export ARGS   = python -m agents.inspect.export ARGS   write a run's results (JSONL, Parquet, HF)
    reer status ARGS   = python -m agents.inspect.status ARGS   a run at a glance, from its store
    reer show ARGS     = python -m agents.inspect.show ARGS     one record's search tree
    reer report ARGS   = python -m agents.inspect.report ARGS   a run as one HTML page of plots
    reer serve ARGS    = python -m agents.inspect.serve ARGS    a run live in the browser, read-only
    reer scorer ARGS   = python -m scorer.server ARGS   a standalone scorer (--scorer-url)
"""

from __future__ import annotations

import importlib
import sys

COMMANDS = {
    "run": ("agents.run", "synthesize REER thinking for every record of an input file"),
    "export": ("agents.inspect.export", "write a run's results from its store: JSONL, Parquet or a HF dataset, filtered"),
    "status": ("agents.inspect.status", "a run at a glance from its store: counts, failures by reason, config"),
    "show": ("agents.inspect.show", "one record's search tree: draft, steps, candidates, scores"),
    "report": ("agents.inspect.report", "a run as one HTML page of plots, with its best and worst records"),
    "serve": ("agents.inspect.serve.server", "a run live in the browser, read-only: overview, records, search trees"),
    "scorer": ("scorer.server", "run a scorer process for other runs to use (--scorer-url)"),
}


def usage() -> str:
    lines = ["usage: reer COMMAND [ARGS...]   (reer COMMAND --help for its options)", "", "commands:"]
    lines += [f"  {name:<8} {help_}" for name, (_, help_) in COMMANDS.items()]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] in ("-h", "--help"):
        print(usage(), file=sys.stdout if argv else sys.stderr)
        return 0 if argv else 2
    name, rest = argv[0], argv[1:]
    if name not in COMMANDS:
        print(f"reer: unknown command {name!r}\n\n{usage()}", file=sys.stderr)
        return 2
    return importlib.import_module(COMMANDS[name][0]).main(rest)


if __name__ == "__main__":
    sys.exit(main())
