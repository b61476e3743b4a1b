"""``reer run --ray``: the whole fleet from one command, on the cluster Ray already runs.

The driver checks the input and the store, runs the endpoints' preflight and creates (or
resumes) the run, then starts ``--ray-scorers`` scorer actors and ``--ray-workers`` worker
actors (``agents.cluster.actors``) and follows the run from the store until every worker is
done; it writes ``--out`` for the whole run at the end. Ray restarts a dead actor (and retries
its ``run``): a restarted worker joins the run again and the records of the dead one are taken
over through their leases, a restarted scorer serves on its port again. The store, not Ray,
holds the run's progress, so a lost head node or a Ctrl-C costs only what was in flight, and
the same command resumes.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import secrets
import time
from dataclasses import replace
from pathlib import Path

from agents import config as C
from agents.cluster.actors import ScorerActor, WorkerActor, free_port
from agents.errors import ConfigError
from agents.search.inputs import read_records
from agents.services.fleet import log_path, scorer_args
from agents.watch.dashboard import Display
from agents.watch.stats import Stats
from agents.worker import EXIT_ERROR, EXIT_INTERRUPTED, begin, fingerprint, outcome, start_generator, write_results
from prompts import PromptSet
from store import RecordStatus, Store

# Ray's default is no restart at all: a fleet that runs for days restarts whatever dies, for good
# (a worker that fails for a reason of its own returns its exit code instead of dying).
MAX_RESTARTS = -1
PROGRESS_S = 10.0  # how often the driver says how the run goes
STOP_EXTRA_S = 15.0  # past --grace-s, how long a stopping worker may take to hand its records back


def run_on_ray(cfg: C.RunConfig, display: Display, stats: Stats) -> int:
    """The run on Ray; its exit code, as ``reer run`` alone would give it."""
    assert cfg.ray is not None
    _refuse_sqlite(cfg, nodes=1)
    ray = _connect(cfg.ray.address, display)
    cfg = _absolute(cfg)
    _refuse_sqlite(cfg, nodes=len(_alive_nodes(ray)))
    inputs = read_records(cfg.input, strict=cfg.strict)  # all validated before any actor starts
    for problem in inputs.problems:
        display.log(f"skipping input record: {problem}", "WARN")
    run_id = asyncio.run(_prepare(cfg, inputs, display, stats))
    token = cfg.scorer.token or secrets.token_urlsafe(24)
    scorers, urls = _start_scorers(ray, cfg, token, display)
    workers = [ray.remote(WorkerActor).options(max_restarts=MAX_RESTARTS, max_task_retries=MAX_RESTARTS,
                                               num_cpus=1, scheduling_strategy="SPREAD")
               .remote(i, str(log_path(cfg.db, f"ray-worker-{i}").resolve())) for i in range(cfg.ray.workers)]
    worker_cfg = replace(cfg, out=None, ray=None, scorer=replace(cfg.scorer, urls=urls, token=token))
    runs = [w.run.remote(worker_cfg) for w in workers]
    fleet = Fleet(ray, {**{f"scorer {i}": s for i, s in enumerate(scorers)},
                        **{f"worker {i}": w for i, w in enumerate(workers)}}, display)
    stats.phase = "searching"
    try:
        codes = fleet.follow(runs, lambda: _progress(cfg.db, run_id))
    except KeyboardInterrupt:
        stats.phase = "stopping"
        fleet.stop(workers, runs, cfg.grace_s)
        return EXIT_INTERRUPTED
    finally:
        fleet.kill()
    with contextlib.closing(Store.open(cfg.db)) as store:
        if cfg.out is not None:
            write_results(store, run_id, cfg.out, display, whole=True)
        code = outcome(store, run_id, inputs, display, stats)
        stats.already_done = store.status_counts(run_id).get(RecordStatus.done, 0)  # the workers' counts, for the last line
    return EXIT_ERROR if EXIT_ERROR in codes else code


def _connect(address: str, display: Display):
    try:
        import ray
    except ImportError:
        raise ConfigError("--ray needs Ray: pip install 'reer[ray]'") from None
    try:
        ray.init(address=address, log_to_driver=True, configure_logging=False)
    except ConnectionError:
        if address != "auto":
            raise ConfigError(f"--ray {address}: no Ray cluster answers there (ray start --head starts one; a "
                              "cluster with token authentication needs RAY_AUTH_MODE=token here too)") from None
        display.log("--ray: no Ray cluster runs on this node; starting a local one")
        ray.init(log_to_driver=True, configure_logging=False)
    res = ray.cluster_resources()
    display.log(f"ray: {len(_alive_nodes(ray))} nodes, {res.get('CPU', 0):g} CPUs, {res.get('GPU', 0):g} GPUs")
    return ray


def _alive_nodes(ray) -> list[dict]:
    return [n for n in ray.nodes() if n.get("Alive")]


def _absolute(cfg: C.RunConfig) -> C.RunConfig:
    """Paths as every actor sees them (their working folder is not the driver's)."""
    db = cfg.db if "://" in cfg.db else str(Path(cfg.db).resolve())
    return replace(cfg, input=cfg.input.resolve(), db=db, out=cfg.out and cfg.out.resolve(),
                   prompts_dir=cfg.prompts_dir and cfg.prompts_dir.resolve())


def _refuse_sqlite(cfg: C.RunConfig, nodes: int) -> None:
    """A SQLite file takes one process on one machine: one worker, on a cluster of this node alone."""
    assert cfg.ray is not None
    if "://" in cfg.db and not cfg.db.startswith("sqlite"):
        return
    if cfg.ray.workers > 1 or nodes > 1:
        raise ConfigError(f"--ray with a SQLite --db ({cfg.db}): a SQLite file takes one worker on one machine; "
                          "give --db postgresql+psycopg://USER@HOST/DB (pip install 'reer[postgres]')")


async def _prepare(cfg: C.RunConfig, inputs, display: Display, stats: Stats) -> int:
    """The preflight, then the run created or resumed in the store (nothing is claimed here)."""
    Store.check(cfg.db)
    prompts = PromptSet(cfg.prompts_dir)
    async with contextlib.AsyncExitStack() as stack:
        _, generator, endpoint = await start_generator(cfg, display, stats, random.Random(cfg.seed), stack)
        with contextlib.closing(Store.open(cfg.db)) as store:
            start, _ = begin(store, fingerprint(cfg, prompts, generator, endpoint), cfg, inputs, False, display, stats)
            store.leave()  # the driver is no worker: it holds no record
    return start.run_id


def _start_scorers(ray, cfg: C.RunConfig, token: str, display: Display) -> tuple[list, tuple[str, ...]]:
    """The scorer actors, each on a GPU of its own (a CPU on a cluster without), and their URLs."""
    assert cfg.ray is not None
    if not cfg.ray.scorers:
        return [], cfg.scorer.urls
    gpus = ray.cluster_resources().get("GPU", 0) >= 1
    resources = {"num_gpus": 1} if gpus else {"num_cpus": 1}
    actor = ray.remote(ScorerActor).options(max_restarts=MAX_RESTARTS, **resources)
    scorers = [actor.remote(scorer_args(cfg)[1], token, free_port(), str(log_path(cfg.db, f"ray-scorer-{i}").resolve()))
               for i in range(cfg.ray.scorers)]
    urls = tuple(ray.get([s.url.remote() for s in scorers]))
    for i, url in enumerate(urls):
        display.log(f"scorer {i}: {url} ({'a GPU' if gpus else 'a CPU: the cluster has no GPU'})")
    return scorers, urls


def _progress(db: str, run_id: int) -> str:
    with contextlib.closing(Store.open(db)) as store:
        counts = store.status_counts(run_id)
    total = sum(counts.values())
    done = counts.get(RecordStatus.done, 0)
    return (f"records {done}/{total} done, {counts.get(RecordStatus.running, 0)} running, "
            f"{counts.get(RecordStatus.failed, 0)} failed")


class Fleet:
    """The actors of the run, followed by name: where each runs, and when Ray restarts one."""

    def __init__(self, ray, actors: dict, display: Display):
        self.ray, self.actors, self.display = ray, actors, display
        self.pids: dict[str, int | None] = dict.fromkeys(actors)

    def follow(self, runs: list, progress) -> list[int]:
        """Until every worker's run returns: its exit codes; a line on the run every PROGRESS_S."""
        pending, last = list(runs), 0.0
        while pending:
            _, pending = self.ray.wait(pending, num_returns=len(pending), timeout=1.0)
            states = self.states()  # a restart is said when it happens, the rest every PROGRESS_S
            if time.monotonic() - last >= PROGRESS_S:
                last = time.monotonic()
                self.display.log(f"[ray] {progress()} | {states}")
        return self.ray.get(runs)

    def states(self) -> str:
        """Each actor up (its pid on its node) or not answering; a new pid is a restart, said once."""
        asked = {name: a.where.remote() for name, a in self.actors.items()}
        ready, _ = self.ray.wait(list(asked.values()), num_returns=len(asked), timeout=2.0)
        down = []
        for name, ref in asked.items():
            try:
                pid, host = self.ray.get(ref) if ref in ready else (None, None)
            except Exception:  # restarting, or its node gone: Ray says which when it is back
                pid = None
            if pid is None:
                down.append(name)
                continue
            if self.pids[name] is None:
                self.display.log(f"{name}: pid {pid} on {host}")
            elif self.pids[name] != pid:
                self.display.log(f"{name}: restarted by Ray (pid {self.pids[name]} -> {pid} on {host})", "WARN")
            self.pids[name] = pid
        up = len(asked) - len(down)
        return f"actors {up}/{len(asked)} up" + (f" (not answering: {', '.join(down)})" if down else "")

    def stop(self, workers: list, runs: list, grace_s: float) -> None:
        """Ctrl-C: each worker stops as in a terminal, handing its records back; then they go."""
        self.display.log(f"stopping the workers: in-flight records get {grace_s:.0f} s to finish (Ctrl-C again "
                         "to stop now). Progress is saved either way.")
        try:
            self.ray.get([w.stop.remote() for w in workers], timeout=STOP_EXTRA_S)
            self.ray.wait(runs, num_returns=len(runs), timeout=grace_s + STOP_EXTRA_S)
        except KeyboardInterrupt:
            pass
        except Exception as exc:  # a worker gone meanwhile: its lease runs out by itself
            self.display.log(f"a worker did not stop cleanly ({type(exc).__name__}); its records are taken over "
                             "after --lease-s", "WARN")

    def kill(self) -> None:
        for actor in self.actors.values():
            with contextlib.suppress(Exception):
                self.ray.kill(actor, no_restart=True)
