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
from agents.services.scorers import Scorer, ScorerPool, identity_problems, ready_health
from agents.services.supervised import SupervisedScorer
from scorer import ScorerClient
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


async def connect_scorers(cfg: C.RunConfig, log: Log, stack: contextlib.AsyncExitStack) -> list[tuple[str, Scorer]]:
    """The running scorers of --scorer-url, each checked to score as this run is configured to
    (a mismatch stops the run before anything is stored)."""
    members = []
    for url in cfg.scorer.urls:
        if url.rstrip("/").endswith("/v1"):  # an OpenAI-style server: vLLM scoring with prompt_logprobs
            vllm = VLLMScorer(url, cfg.scorer.settings, cfg.scorer.tokenizer, cfg.scorer.token)
            stack.push_async_callback(quietly, vllm.aclose)
            entry = await vllm.start()
            log(f"scorer: {vllm.model} at {url} (vLLM, context {entry.get('max_model_len', 'not said')})")
            members.append((url, vllm))
            continue
        client = ScorerClient(url, token=cfg.scorer.token)
        stack.push_async_callback(quietly, client.aclose)
        health = await ready_health(client, log)
        problems = identity_problems(health, cfg.scorer.settings)
        if problems:
            raise ConfigError(f"the scorer at {url} does not score as this run is configured to: "
                              + "; ".join(problems) + ". Give this run the scorer's settings, or another --scorer-url")
        log(f"scorer: {health.model} at {url} ({(health.model_extra or {}).get('dtype', 'dtype not said')})")
        members.append((url, client))
    return members


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


def one_or_pool(members: list[tuple[str, Scorer]], log: Log) -> Scorer:
    """One scorer as it is; several behind the pool that keeps each record on one of them."""
    return members[0][1] if len(members) == 1 else ScorerPool(members, log)
