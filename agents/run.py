"""``python -m agents.run``: synthesize REER thinking for every record of an input file.

    python -m agents.run --endpoint http://127.0.0.1:8000/v1 --input data.jsonl \\
        --db runs/x.db --out runs/x.jsonl --scorer-model Qwen/Qwen3-8B-Base

Without ``--endpoint`` (or with ``--endpoint local``) it starts an embedded llama.cpp server
with the Gemma 3 270M demo model. Running the same command again on the same ``--db`` resumes.
"""

from __future__ import annotations

import asyncio
import sys
import time
import traceback

from agents.errors import ConfigError, ReerError
from agents.options import config_from_args, dump_config, parse_args
from agents.services.fleet import log_path
from agents.services.process import ServiceError
from agents.watch.dashboard import Display, summary_line
from agents.watch.runlog import RunLog
from agents.watch.stats import Stats
from agents.worker import EXIT_ERROR, EXIT_INTERRUPTED, EXIT_OK, work
from prompts import PromptError
from scorer import ScorerError
from store import StoreError


def unexpected_log(db: str, exc: BaseException) -> str:
    """Append the traceback to the error log beside the database; say where it went."""
    path = log_path(db, "error")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("a", encoding="utf-8") as f:
            # No command line here: it may hold --api-key.
            f.write(f"--- {time.strftime('%Y-%m-%d %H:%M:%S')} unexpected error\n")
            f.write("".join(traceback.format_exception(exc)))
    except OSError as err:
        return f"the traceback could not be written to {path}: {err}"
    return f"traceback in {path}"


def main(argv: list[str] | None = None) -> int:
    try:
        args = parse_args(argv)
    except ConfigError as exc:
        print(f"reer: error: {exc}", file=sys.stderr)
        return EXIT_ERROR
    stats = Stats()
    db = args.db or f"runs/{args.input.stem}.db"
    runlog: RunLog | None = None
    try:
        cfg = config_from_args(args)
        if args.dump_config:
            print(dump_config(args), end="")
            return EXIT_OK
        runlog = RunLog(log_path(cfg.db, "run"), cfg.log_json)
        stats.prices = cfg.prices
        stats.on_error = lambda message: runlog.write("ERROR", message)
        try:
            with Display(stats, str(cfg.input), live=None if cfg.dashboard else False, runlog=runlog) as display:
                code = asyncio.run(work(cfg, display, stats))
        except (KeyboardInterrupt, asyncio.CancelledError):
            code = EXIT_INTERRUPTED
        if code == EXIT_INTERRUPTED:
            return _last_word(runlog, "reer: interrupted; progress is saved, run the same command to resume. "
                                      + summary_line(stats), code)
        return _last_word(runlog, summary_line(stats), code, sys.stdout, "INFO")
    except (ReerError, ScorerError, StoreError, PromptError, ServiceError) as exc:
        return _last_word(runlog, f"reer: error: {exc}", EXIT_ERROR)
    except Exception as exc:  # a defect: one line for the user, the traceback for the report
        if runlog is not None:
            runlog.write("ERROR", "".join(traceback.format_exception(exc)))
        what = " ".join(str(exc).split())[:300]
        return _last_word(runlog, f"reer: error: unexpected {type(exc).__name__}: {what} ({unexpected_log(db, exc)}; "
                                  "progress is saved, run the same command to resume)", EXIT_ERROR)
    finally:
        if runlog is not None:
            runlog.close()


def _last_word(runlog: RunLog | None, line: str, code: int, stream=None, level: str = "ERROR") -> int:
    """The run's closing line, on the terminal and in its log file; the exit code."""
    print(line, file=stream or sys.stderr)
    if runlog is not None:
        runlog.write(level if code != EXIT_INTERRUPTED else "WARN", line)
    return code


if __name__ == "__main__":
    sys.exit(main())
