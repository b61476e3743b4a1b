"""``python -m agents.run``: synthesize REER thinking for every record of an input file.

    python -m agents.run --endpoint http://127.0.0.1:8000/v1 --input data.jsonl \\
        --db runs/x.db --out runs/x.jsonl --scorer-model Qwen/Qwen3-8B-Base

Without ``--endpoint`` (or with ``--endpoint local``) it starts an embedded llama.cpp server
with the Gemma 3 270M demo model. Running the same command again on the same ``--db`` resumes.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import sys
import time
import traceback
from dataclasses import replace
from pathlib import Path

from agents import config as C
from agents.errors import ConfigError, ReerError
from agents.generation.endpoint import EndpointInfo
from agents.generation.generator import Generator
from agents.generation.router import Router
from agents.inspect.export import write_jsonl
from agents.inspect.status import reasons_summary
from agents.options import LOCAL, config_from_args, dump_config, parse_args
from agents.search.claims import ClaimLoop
from agents.search.inputs import read_records
from agents.search.record import RecordSearch, draft_stop
from agents.search.shutdown import Shutdown
from agents.services.fleet import connect_scorers, log_path, one_or_pool, quietly, start_local_endpoint, start_scorers
from agents.services.process import ServiceError
from agents.watch.dashboard import Display, summary_line
from agents.watch.runlog import RunLog
from agents.watch.stats import Stats
from prompts import PromptError, PromptSet
from scorer import ScorerError
from store import RecordStatus, RunStart, Store, StoreError, shown

EXIT_OK, EXIT_FAILED_RECORDS, EXIT_ERROR, EXIT_INTERRUPTED = 0, 1, 2, 130

NO_PREFILL_WARNING = (
    "WARNING: this endpoint cannot continue a prefilled assistant turn{why}, so drafts get no trigger phrase "
    "(\"Okay, I am given\" / \"Alright, the user\" / \"Alright\") and edits no lead-in: the data lacks the "
    "paper's injected human-like thinking. For REER data as the paper made it, use an endpoint that can "
    "(vLLM, SGLang, llama.cpp) or --mode completions.")
DEMO_NOTICE = ("reer: no --endpoint given: serving the Gemma 3 270M demo model with llama.cpp on 127.0.0.1. "
               "It is a tiny base model that proves the machinery, not a writer: for real data pass "
               "--endpoint http://HOST:PORT/v1 (vLLM, llama.cpp, OpenAI) and a real --scorer-model.")

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


async def run(cfg: C.RunConfig, display: Display, stats: Stats) -> int:
    inputs = read_records(cfg.input, strict=cfg.strict)  # all validated before anything is written
    for problem in inputs.problems:
        display.log(f"skipping input record: {problem}", "WARN")
    prompts = PromptSet(cfg.prompts_dir)
    rng = random.Random(cfg.seed)
    shutdown = Shutdown(cfg.grace_s, display, stats)
    shutdown.install()
    Store.check(cfg.db)  # a database that cannot be written stops the run before the endpoint is asked
    async with contextlib.AsyncExitStack() as stack:
        cfg, generator, endpoint = await _start_generator(cfg, display, stats, rng, stack)
        stats.phase = "connecting to the scorer"
        remote = await connect_scorers(cfg, display.log, stack)  # checked before anything is stored
        holder = Store.hold(cfg.db)  # SQLite: one run process per database; a server database is shared
        stack.callback(holder.release)
        store = Store.open(cfg.db)  # created only once the endpoint has answered
        stack.callback(store.close)
        fingerprint = cfg.fingerprint(prompts.fingerprint())
        fingerprint["generator_model"] = generator.model
        fingerprint["prefill"] = endpoint.prefills  # what shapes the drafts, whichever way it is sent
        start, unfinished = _begin(store, fingerprint, cfg, inputs, holder.exclusive, display, stats)
        stack.callback(_leave, store, display)
        if unfinished:  # a finished run has nothing to score: no scorer to load
            stats.phase = "starting scorer"
            scorer = one_or_pool(remote or await start_scorers(cfg, display.log, stack), display.log)
            searcher = RecordSearch(cfg.search, generator, scorer, store, prompts, stats, rng,
                                    edit_prefill=cfg.generator.edit_prefill, prefill_supported=endpoint.prefills,
                                    failure_budget=cfg.record_failures, seed=cfg.seed)
            claims = ClaimLoop(searcher, store, start.run_id, cfg.concurrency, cfg.lease_s, shutdown, display.log, stats)
            ticker = asyncio.create_task(_tick(display))
            try:
                await claims.run()
            finally:
                ticker.cancel()
        code = _report(store, start.run_id, cfg.out, inputs, display, stats)
        return EXIT_INTERRUPTED if shutdown.requested else code  # a stopped run says so, however it ended


async def _start_generator(cfg: C.RunConfig, display: Display, stats: Stats, rng: random.Random,
                           stack: contextlib.AsyncExitStack) -> tuple[C.RunConfig, Router, EndpointInfo]:
    """The embedded endpoint if asked for, then the generator and its preflight."""
    if cfg.generator.endpoint == LOCAL:
        display.log(DEMO_NOTICE)
        stats.phase = "starting local endpoint"
        cfg = replace(cfg, generator=replace(cfg.generator, endpoint=await start_local_endpoint(cfg.db, stack)))
    max_connections = max(64, 4 * cfg.concurrency)
    generator = Router([Generator(g, stats, rng, max_connections=max_connections, log=display.log)
                        for g in cfg.generators], cfg.generator.retry, stats, rng, display.log)
    stack.push_async_callback(quietly, generator.aclose)
    stats.phase = "connecting"
    endpoint = await generator.start(cfg.search.expansions, draft_stop(cfg.search.acceptance))
    for e in generator.endpoints:
        display.log(f"generator: {e.model} at {e.cfg.endpoint} ({cfg.generator.mode} mode; {e.info.describe()})")
    if not endpoint.prefills:
        why = f" ({endpoint.no_prefill_reason})" if endpoint.no_prefill_reason else " (--chat-prefill off)"
        display.log(NO_PREFILL_WARNING.format(why=why), "WARN")
    return cfg, generator, endpoint


def _begin(store: Store, fingerprint: dict, cfg: C.RunConfig, inputs, alone: bool, display: Display,
           stats: Stats) -> tuple[RunStart, int]:
    """Create or resume the run in the store and join it as a worker; how many records are
    unfinished (this worker's to claim, or other workers')."""
    start = store.begin_run(fingerprint, str(cfg.input), inputs.records, force=cfg.force, lease_s=cfg.lease_s,
                            alone=alone)
    if cfg.retry_failed:
        display.log(f"--retry-failed: {store.reset_failed(start.run_id)} failed records will run again")
    unfinished = len(store.records_to_run(start.run_id))
    others = len(store.live_workers(start.run_id)) - 1
    if others > 0:
        display.log(f"joined the run in {shown(cfg.db)} beside {others} other live worker{'s' * (others > 1)}: "
                    f"{unfinished} records unfinished, {start.done} done")
    elif start.resumed:
        display.log(f"resumed run in {shown(cfg.db)}: resumed {unfinished} records, {start.steps_kept} steps kept, "
                    f"{start.done} done earlier" + (f" ({', '.join(start.changes)})" if start.changes else ""))
    stats.total, stats.already_done = start.total, start.total - unfinished
    return start, unfinished


def _leave(store: Store, display: Display) -> None:
    """Free this worker's unfinished records for the others now, not when its lease runs out."""
    try:
        store.leave()
    except StoreError as exc:  # the database is gone: the lease runs out by itself
        display.log(f"could not hand back this worker's records ({exc}); others take them after --lease-s", "WARN")


def _report(store: Store, run_id: int, out: Path, inputs, display: Display, stats: Stats) -> int:
    """Write the results, list what did not finish and why; the run's exit code."""
    counts = store.status_counts(run_id)
    unfinished = counts.get(RecordStatus.pending, 0) + counts.get(RecordStatus.running, 0)
    stats.phase = "stopped" if unfinished else "finished"
    if store.shared(run_id):  # other workers wrote theirs: the whole run is `reer export`'s
        n = write_jsonl(store, run_id, out, worker_id=store.worker_id)
        display.log(f"wrote the {n} records this worker finished to {out} (other workers shared the run: "
                    "reer export --db DB writes all of it)")
    else:
        n = write_jsonl(store, run_id, out)
        display.log(f"wrote {n} records to {out}")
    if unfinished:
        display.log(f"{unfinished} records unfinished: run the same command to resume them")
        return EXIT_INTERRUPTED
    problems = store.unfinished_problems(run_id)
    for rec in problems:
        display.log(f"  record {rec.key}: {rec.status.value}: {rec.error}")
    for problem in inputs.problems:
        display.log(f"  input: {problem}")
    if not counts.get(RecordStatus.done):
        display.log("no record produced a result; by reason:")
        for line in reasons_summary(problems):
            display.log(f"  {line}")
        return EXIT_FAILED_RECORDS
    failed = any(r.status == RecordStatus.failed for r in problems) or inputs.problems
    return EXIT_FAILED_RECORDS if failed else EXIT_OK


async def _tick(display: Display) -> None:
    while True:
        display.tick()
        await asyncio.sleep(1.0)


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
                code = asyncio.run(run(cfg, display, stats))
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
