"""Bringing up the services a run uses: the embedded demo endpoint, a scorer process per
``--scorer-device``, and the running scorers of ``--scorer-url``, each checked to score as the
run is configured to before anything is stored. Each is closed with the run's exit stack."""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import replace
from pathlib import Path
from typing import Callable

from agents import config as C
from agents.errors import ConfigError
from agents.services.process import ChildService
from agents.services.scorers import DOWN_S, Counted, Scorer, ScorerPool, identity_problems, ready_health
from agents.services.supervised import SupervisedScorer
from scorer import ScorerClient, ScorerUnavailable
from scorer.vllm import VLLMScorer

Log = Callable[[str], None]


def log_path(db: str, service: str) -> Path:
    """Where a child service writes its log: beside a SQLite database, else under runs/."""
    return Path(f"{db}.{service}.log") if "://" not in db else Path(f"runs/{service}.log")


def scorer_args(cfg: C.RunConfig) -> list[str]:
    """The scorer child's command line: its settings as one JSON object, parsed by nothing else."""
    return ["--settings-json", cfg.scorer.settings.to_json()]


async def quietly(close) -> None:
    """Closing one service must not keep the others open."""
    with contextlib.suppress(Exception):
        await close()


async def start_local_endpoint(db: str, stack: contextlib.AsyncExitStack) -> str:
    """The embedded llama.cpp endpoint (``agents.services.local_server``); its base URL."""
    local = ChildService("local endpoint", "agents.services.local_server", [], log_path(db, "endpoint"))
    stack.push_async_callback(quietly, local.stop)
    return await local.start()


async def connect_scorers(cfg: C.RunConfig, log: Log, stack: contextlib.AsyncExitStack) -> ScorerPool | None:
    """The running scorers of --scorer-url, each checked to score as this run is configured to
    (a mismatch stops the run before anything is stored). The run starts once one answers; one
    that does not yet is tried again in the background and joins when it answers."""
    if not cfg.scorer.urls:
        return None
    urls = list(cfg.scorer.urls)
    pool = ScorerPool([], log, pending=tuple(urls), wait_s=cfg.scorer.wait_s, deadlines=cfg.deadlines)  # each member is closed by the stack that opened it
    first: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    silent: set[str] = set()

    async def join(url: str) -> None:
        while True:
            try:
                scorer = await _connect_one(url, cfg, log, stack)
            except ScorerUnavailable as exc:
                if url not in silent:
                    silent.add(url)
                    if len(silent) == len(urls) and not first.done():
                        first.set_exception(exc)  # none answered: today's error, nothing stored
                        return
                    log(f"the scorer at {url} does not answer ({exc}); the run goes on with the others and tries "
                        f"it again every {DOWN_S:.0f} s")
                await asyncio.sleep(DOWN_S)
                continue
            except Exception as exc:  # a mismatch: before the start it stops the run, after it keeps it out
                if not first.done():
                    first.set_exception(exc)
                else:
                    log(f"the scorer at {url} is kept out of the run: {exc}")
                return
            pool.add(url, scorer)
            if first.done():
                log(f"the scorer at {url} answers now and takes back its records")
            else:
                first.set_result(None)
            return

    tasks = [asyncio.create_task(join(url)) for url in urls]
    stack.callback(lambda: [t.cancel() for t in tasks])
    await first
    return pool


async def _connect_one(url: str, cfg: C.RunConfig, log: Log, stack: contextlib.AsyncExitStack) -> Scorer:
    """One --scorer-url once it answers as this run's scorer (ConfigError where it differs)."""
    if url.rstrip("/").endswith("/v1"):  # an OpenAI-style server: vLLM scoring with prompt_logprobs
        vllm = VLLMScorer(url, cfg.scorer.settings, cfg.scorer.tokenizer, cfg.scorer.token)
        stack.push_async_callback(quietly, vllm.aclose)
        entry = await vllm.start()
        log(f"scorer: {vllm.model} at {url} (vLLM, context {entry.get('max_model_len', 'not said')})")
        return vllm
    client = ScorerClient(url, token=cfg.scorer.token, health_timeout_s=cfg.deadlines.probe_s)
    stack.push_async_callback(quietly, client.aclose)
    health = await ready_health(client, log, connect_wait_s=cfg.scorer.wait_s)
    problems = identity_problems(health, cfg.scorer.settings)
    if problems:
        raise ConfigError(f"the scorer at {url} does not score as this run is configured to: "
                          + "; ".join(problems) + ". Give this run the scorer's settings, or another --scorer-url")
    log(f"scorer: {health.model} at {url} ({(health.model_extra or {}).get('dtype', 'dtype not said')})")
    return client


async def start_scorers(cfg: C.RunConfig, log: Log, stack: contextlib.AsyncExitStack) -> list[tuple[str, Scorer]]:
    """A scorer process per --scorer-device (one where none is given), started at once."""
    settings = cfg.scorer.settings
    devices = [d.strip() for d in settings.device.split(",")] if settings.device else [None]
    members = []
    for i, device in enumerate(devices):
        name = "scorer" if len(devices) == 1 else f"scorer-{i}"
        log(f"starting the {name} ({settings.model}{' on ' + device if device else ''}); log: {log_path(cfg.db, name)}")
        args = scorer_args(replace(cfg, scorer=replace(cfg.scorer, settings=replace(settings, device=device))))
        supervised = SupervisedScorer(ChildService(name, "scorer.server", args, log_path(cfg.db, name)), log)
        stack.push_async_callback(quietly, supervised.aclose)
        members.append((device or name, supervised))
    await asyncio.gather(*(s.start() for _, s in members))
    return members


def one_or_pool(members: list[tuple[str, Scorer]], log: Log,
                deadlines: C.Deadlines = C.Deadlines()) -> Counted | ScorerPool:
    """One scorer as it is (its requests counted); several behind the pool that keeps each
    record on one of them."""
    return Counted(*members[0]) if len(members) == 1 else ScorerPool(members, log, deadlines=deadlines)
