"""One worker of a run, start to end: the endpoints' preflight, the store (create, resume or
join the run), the scorers, the claim loop over the records, and the results it writes.

``agents.run`` runs one in the terminal; ``agents.cluster`` runs one in each Ray worker actor.
"""


from __future__ import annotations

import asyncio
import contextlib
import random
import time
from dataclasses import replace
from pathlib import Path
from typing import Callable

from agents import config as C
from agents.errors import ResultsUnwritten, StoreSpilled
from agents.generation.endpoint import EndpointInfo
from agents.generation.generator import Generator
from agents.generation.router import Router
from agents.inspect.export import write_jsonl
from agents.inspect.status import reasons_summary
from agents.options import LOCAL
from agents.search.claims import ClaimLoop
from agents.search.inputs import read_records
from agents.search.outage import StoreOutage
from agents.search.record import RecordSearch, draft_stop
from agents.search.shutdown import Shutdown
from agents.search.spill import replay, spill_file, write_spill
from agents.services.fleet import connect_scorers, one_or_pool, quietly, start_local_endpoint, start_scorers
from agents.services.scorers import Counted, ScorerPool
from agents.watch.dashboard import Display
from agents.watch.stats import Stats
from agents.watch.watchdog import Watchdog
from prompts import PromptSet
from store import RecordStatus, RunStart, Store, StoreError, StoreUnavailable, shown

EXIT_OK, EXIT_FAILED_RECORDS, EXIT_ERROR, EXIT_INTERRUPTED = 0, 1, 2, 130

NO_PREFILL_WARNING = (
    "WARNING: this endpoint cannot continue a prefilled assistant turn{why}, so drafts get no trigger phrase "
    "(\"Okay, I am given\" / \"Alright, the user\" / \"Alright\") and edits no lead-in: the data lacks the "
    "paper's injected human-like thinking. For REER data as the paper made it, use an endpoint that can "
    "(vLLM, SGLang, llama.cpp) or --mode completions.")
DEMO_NOTICE = ("reer: no --endpoint given: serving the Gemma 3 270M demo model with llama.cpp on 127.0.0.1. "
               "It is a tiny base model that proves the machinery, not a writer: for real data pass "
               "--endpoint http://HOST:PORT/v1 (vLLM, llama.cpp, OpenAI) and a real --scorer-model.")

async def work(cfg: C.RunConfig, display: Display, stats: Stats, shutdown: Shutdown | None = None) -> int:
    """The run as one worker; its exit code. ``shutdown``: a stop asked for by other means than this
    process's signals (a Ray actor's stop), else Ctrl-C and SIGTERM."""
    inputs = read_records(cfg.input, strict=cfg.strict)  # all validated before anything is written
    for problem in inputs.problems:
        display.log(f"skipping input record: {problem}", "WARN")
    prompts = PromptSet(cfg.prompts_dir)
    rng = random.Random(cfg.seed)
    shutdown = shutdown or Shutdown(cfg.grace_s, display, stats)
    shutdown.install()
    Store.check(cfg.db)  # a database that cannot be written stops the run before the endpoint is asked
    async with contextlib.AsyncExitStack() as stack:
        cfg, generator, endpoint = await start_generator(cfg, display, stats, rng, stack)
        stats.phase = "connecting to the scorer"
        remote = await connect_scorers(cfg, display.log, stack)  # checked before anything is stored
        holder = Store.hold(cfg.db)  # SQLite: one run process per database; a server database is shared
        stack.callback(holder.release)
        store = Store.open(cfg.db)  # created only once the endpoint has answered
        stack.callback(store.close)
        start, unfinished = begin(store, fingerprint(cfg, prompts, generator, endpoint), cfg, inputs,
                                  holder.exclusive, display, stats)
        stack.callback(_leave, store, display)
        replay(store, cfg.db, display.log)  # what an earlier start held when the store went away
        outage = StoreOutage(cfg.store_wait_s, stats, display.log, rng, lambda: shutdown.requested)
        outage.on_back = store.heartbeat
        try:
            if unfinished:  # a finished run has nothing to score: no scorer to load
                await _search(cfg, start.run_id, store, generator, endpoint, remote, prompts, rng, shutdown, outage,
                              display, stats, stack)
        except StoreError as exc:
            spilled = _spilled(exc, outage, cfg.db, store.worker_id)
            if spilled is None:
                raise
            raise spilled from exc
        try:
            code = await outage.call(lambda again: _report(store, start.run_id, cfg.out, inputs, display, stats))
        except StoreUnavailable as exc:
            if cfg.out is None:
                raise
            raise ResultsUnwritten(exc, cfg.out) from exc  # the search is stored: only its writing is left
        return EXIT_INTERRUPTED if shutdown.requested else code  # a stopped run says so, however it ended


async def _search(cfg: C.RunConfig, run_id: int, store: Store, generator: Router, endpoint: EndpointInfo, remote,
                  prompts: PromptSet, rng: random.Random, shutdown: Shutdown, outage: StoreOutage, display: Display,
                  stats: Stats, stack: contextlib.AsyncExitStack) -> None:
    """Start the scorers and search the records this worker claims, until none is left."""
    stats.phase = "starting scorer"
    scorer = remote or one_or_pool(await start_scorers(cfg, display.log, stack), display.log, cfg.deadlines)
    searcher = RecordSearch(cfg.search, generator, scorer, store, prompts, stats, rng,
                            edit_prefill=cfg.generator.edit_prefill, prefill_supported=endpoint.prefills,
                            failure_budget=cfg.record_failures, seed=cfg.seed, outage=outage)
    claims = ClaimLoop(searcher, store, run_id, cfg.concurrency, cfg.lease_s, shutdown, display.log, stats, outage)
    ticker = asyncio.create_task(_tick(display, watchdog(cfg.deadlines.floor_s, stats, scorer, display)))
    try:
        await claims.run()
    finally:
        ticker.cancel()
        stats.stalled_s = None  # the watchdog stopped with the search: what it said no longer holds


def _spilled(exc: StoreError, outage: StoreOutage, db: str, worker: int | None) -> StoreSpilled | None:
    """Where the run stops on the store holding generations it could not store (the wait for the
    store ran out, the run was stopped during it, or a write failed for a cause waiting cannot
    mend: a read-only file, a full disk): they are written to the spill file, and the error
    names it."""
    held = outage.held_nodes()
    if not held:
        return None
    path = spill_file(db, worker)
    try:
        write_spill(path, held, worker)
    except OSError as err:
        return StoreSpilled(exc, len(held), path, outage.gave_up, err)
    return StoreSpilled(exc, len(held), path, outage.gave_up)


async def start_generator(cfg: C.RunConfig, display: Display, stats: Stats, rng: random.Random,
                           stack: contextlib.AsyncExitStack) -> tuple[C.RunConfig, Router, EndpointInfo]:
    """The embedded endpoint if asked for, then the generator and its preflight."""
    if cfg.generator.endpoint == LOCAL:
        display.log(DEMO_NOTICE)
        stats.phase = "starting local endpoint"
        cfg = replace(cfg, generator=replace(cfg.generator, endpoint=await start_local_endpoint(cfg.db, stack)))
    max_connections = max(64, 4 * cfg.concurrency)
    generator = Router([Generator(g, stats, rng, max_connections=max_connections, log=display.log)
                        for g in cfg.generators], cfg.generator.retry, stats, rng, display.log, cfg.deadlines)
    stack.push_async_callback(quietly, generator.aclose)
    stats.phase = "connecting"
    endpoint = await generator.start(cfg.search.expansions, draft_stop(cfg.search.acceptance))
    for e in generator.endpoints:
        if e in generator.waiting:
            display.log(f"generator: {e.cfg.endpoint} has not answered its preflight; the run starts without it, "
                        "and it takes requests once it answers (tried again in the background)")
        else:
            display.log(f"generator: {e.model} at {e.cfg.endpoint} ({cfg.generator.mode} mode; {e.info.describe()})")
    if len(generator.endpoints) > 1 or cfg.generator.max_in_flight:
        display.log(generator.budget(cfg.concurrency))
    if not endpoint.prefills:
        why = f" ({endpoint.no_prefill_reason})" if endpoint.no_prefill_reason else " (--chat-prefill off)"
        display.log(NO_PREFILL_WARNING.format(why=why), "WARN")
    return cfg, generator, endpoint


def fingerprint(cfg: C.RunConfig, prompts: PromptSet, generator: Router, endpoint: EndpointInfo) -> dict:
    """What shapes the results, as the run stores it: the config's, and what the preflight found."""
    found = cfg.fingerprint(prompts.fingerprint())
    found["generator_model"] = generator.model
    found["prefill"] = endpoint.prefills  # what shapes the drafts, whichever way it is sent
    return found


def begin(store: Store, fingerprint: dict, cfg: C.RunConfig, inputs, alone: bool, display: Display,
           stats: Stats) -> tuple[RunStart, int]:
    """Create or resume the run in the store and join it as a worker; how many records are
    unfinished (this worker's to claim, or other workers')."""
    start = store.begin_run(fingerprint, str(cfg.input), inputs.records, force=cfg.force, lease_s=cfg.lease_s,
                            alone=alone)
    # Stored now, and read from the store a record at a time: holding the input's texts for the
    # whole run would make the worker's memory the input's size, not its concurrency's.
    inputs.records.clear()
    if cfg.retry_failed:
        display.log(f"--retry-failed: {store.reset_failed(start.run_id)} failed records will run again")
    unfinished = store.unfinished_count(start.run_id)
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


def _report(store: Store, run_id: int, out: Path | None, inputs, display: Display, stats: Stats) -> int:
    """Write the results (the records this worker finished, where others shared the run), list
    what did not finish and why; the run's exit code."""
    if out is not None:
        write_results(store, run_id, out, display, whole=not store.shared(run_id))
    return outcome(store, run_id, inputs, display, stats)


def write_results(store: Store, run_id: int, out: Path, display: Display, whole: bool) -> None:
    if whole:
        display.log(f"wrote {write_jsonl(store, run_id, out)} records to {out}")
    else:  # other workers wrote theirs: the whole run is `reer export`'s
        n = write_jsonl(store, run_id, out, worker_id=store.worker_id)
        display.log(f"wrote the {n} records this worker finished to {out} (other workers shared the run: "
                    "reer export --db DB writes all of it)")


def outcome(store: Store, run_id: int, inputs, display: Display, stats: Stats) -> int:
    """The run's exit code from its store, with what did not finish and why."""
    counts = store.status_counts(run_id)  # counted in the index: no record's texts are read
    unfinished = counts.get(RecordStatus.pending, 0) + counts.get(RecordStatus.running, 0)
    stats.phase = "stopped" if unfinished else "finished"
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


def watchdog(after_s: float, stats: Stats, scorer: Counted | ScorerPool, display: Display) -> Callable[[float], None]:
    """The run's watchdog (``agents.watch.watchdog``) over this worker's endpoints and scorers,
    called every tick: once nothing has moved for ``after_s`` (--hang-floor: what a part may
    take to answer anything), one line on the dashboard and in the log saying what the run waits
    on; and the scorers' states for the dashboard."""
    dog = Watchdog(after_s)

    def watch(now: float) -> None:
        sent = {f"endpoint {e.url}": e.sent for e in stats.endpoints}
        sent |= {name if name.startswith("scorer") else f"scorer {name}": times for name, times in scorer.sent.items()}
        sent["a scorer to answer again"] = scorer.queued
        marks = (stats.steps, stats.finished, stats.scored, stats.answered, scorer.answers)
        stats.scorers = scorer.states()
        down = stats.store_down_since
        notes = [] if down is None else [f"the store (down {now - down:.0f} s)"]
        if stats.endpoint_down:  # requests wait for an endpoint's cooldown, none out
            notes.append("an endpoint to answer again (every one set aside)")
        line = dog.check(now, marks, sent, notes, busy=stats.running > 0)
        stats.stalled_s = dog.stalled_s(now)
        if line is not None:
            display.log(line, "WARN")

    return watch


async def _tick(display: Display, watch: Callable[[float], None]) -> None:
    while True:
        display.tick()
        watch(time.monotonic())
        await asyncio.sleep(1.0)


