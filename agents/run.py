"""``python -m agents.run``: synthesize REER thinking for every record of an input file.

    python -m agents.run --endpoint http://127.0.0.1:8000/v1 --input data.jsonl \\
        --db runs/x.db --out runs/x.jsonl --scorer-model Qwen/Qwen3-8B-Base

Without ``--endpoint`` (or with ``--endpoint local``) it starts an embedded llama.cpp server
with the Gemma 3 270M demo model. Running the same command again on the same ``--db`` resumes.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import sys
from dataclasses import replace
from pathlib import Path

from agents import config as C
from agents.dashboard import Display, summary_line
from agents.errors import ConfigError, ReerError
from agents.export import write_jsonl
from agents.generator import Generator
from agents.records import read_records
from agents.stats import Stats
from agents.worker import RecordSearch
from prompts import PromptError, PromptSet
from agents.process import ChildService, ServiceError
from scorer import ScorerClient, ScorerError
from scorer.loading import DEMO_MODEL
from store import RecordStatus, Store, StoreError

EXIT_OK, EXIT_FAILED_RECORDS, EXIT_ERROR, EXIT_INTERRUPTED = 0, 1, 2, 130
LOCAL = "local"

# The embedded endpoint serves a 270M *base* model: it cannot follow the edit instructions or
# close its </think>, so the prefill carries the structure, drafts cut at max_tokens are kept
# (trimmed to whole paragraphs) and everything is kept short enough for 2 CPU cores.
# Applied to the options a user did not set; a remote endpoint gets the reference's defaults.
# It also stops at once (EOS) unless told not to, and loops without a repetition penalty.
LOCAL_DEFAULTS = {"mode": "completions", "chat_format": "gemma", "edit_prefill": "refine",
                  "accept_cut_drafts": True, "max_tokens": 320, "max_steps": 4, "concurrency": 4,
                  "min_draft_tokens": 40, "draft_attempts": 3,
                  "extra_body": {"ignore_eos": True, "repeat_penalty": 1.3}}
REMOTE_DEFAULTS = {"mode": "chat", "chat_format": None, "edit_prefill": "analyze", "accept_cut_drafts": False,
                   "min_draft_tokens": C.MIN_DRAFT_TOKENS, "draft_attempts": 1,
                   "extra_body": {},
                   "max_tokens": C.DEFAULT_MAX_TOKENS, "max_steps": C.DEFAULT_MAX_STEPS,
                   "concurrency": C.DEFAULT_CONCURRENCY}
DEMO_NOTICE = ("reer: no --endpoint given: serving the Gemma 3 270M demo model with llama.cpp on 127.0.0.1. "
               "It is a tiny base model that proves the machinery, not a writer: for real data pass "
               "--endpoint http://HOST:PORT/v1 (vLLM, llama.cpp, OpenAI) and a real --scorer-model.")

def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m agents.run", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    io = p.add_argument_group("input and output")
    io.add_argument("--input", required=True, type=Path, help="records: .json (a list), .jsonl or .parquet")
    io.add_argument("--db", default=None, help="the run's store: a SQLite path or a SQLAlchemy URL "
                                               "(default: runs/<input name>.db)")
    io.add_argument("--out", type=Path, default=None, help="results JSONL (default: runs/<input name>.jsonl)")
    io.add_argument("--force", action="store_true", help="resume even if the config or input changed")

    g = p.add_argument_group("generator endpoint")
    g.add_argument("--endpoint", default=os.environ.get("OPENAI_BASE_URL") or LOCAL,
                   help="OpenAI-compatible base URL ending in /v1 (env OPENAI_BASE_URL); "
                        "'local': an embedded llama.cpp server with the Gemma 3 270M demo model")
    g.add_argument("--api-key", default=None, help="API key (env OPENAI_API_KEY; not needed by local servers)")
    g.add_argument("--model", default=None, help="generator model (default: the first the endpoint lists)")
    g.add_argument("--mode", choices=["chat", "completions"], default=None,
                   help="chat: works everywhere; completions: prefilled assistant turn, as the reference "
                        "(default: chat; completions for the local endpoint)")
    g.add_argument("--generator-tokenizer", default=None, help="completions mode: tokenizer whose chat template to use")
    g.add_argument("--chat-format", default=None, help="completions mode without a tokenizer: gemma, chatml or plain")
    g.add_argument("--edit-prefill", choices=["analyze", "refine"], default=None,
                   help="completions mode: prefill edits up to <analyze> (instruct models) or <refine> (base "
                        "models; default for the local endpoint)")
    g.add_argument("--extra-body", type=_json_object, default=None,
                   help="JSON object of server-specific request fields, e.g. '{\"min_p\": 0.05}' "
                        "(local endpoint default: ignore_eos and repeat_penalty 1.3)")
    g.add_argument("--concurrency", type=int, default=None,
                   help=f"records in flight (default {C.DEFAULT_CONCURRENCY}; 4 for the local endpoint)")
    g.add_argument("--rps", type=float, default=None, help="request-rate limit (requests/s)")
    g.add_argument("--timeout", type=float, default=C.DEFAULT_REQUEST_TIMEOUT_S, help="per-request timeout (s)")
    g.add_argument("--max-retries", type=int, default=C.DEFAULT_MAX_RETRIES, help="retries on 429/5xx/timeouts")

    s = p.add_argument_group("search (defaults are the reference's)")
    s.add_argument("--stop-ppl", type=float, default=C.DEFAULT_STOP_SCORE, help="stop below this score")
    s.add_argument("--max-steps", type=int, default=None,
                   help=f"(default {C.DEFAULT_MAX_STEPS}; 4 for the local endpoint)")
    s.add_argument("--expansions", type=int, default=C.DEFAULT_EXPANSIONS, help="candidates per step")
    s.add_argument("--temperature", type=float, default=C.DEFAULT_TEMPERATURE)
    s.add_argument("--top-p", type=float, default=C.DEFAULT_TOP_P)
    s.add_argument("--top-k", type=int, default=C.DEFAULT_TOP_K, help="0 leaves it out (OpenAI rejects it)")
    s.add_argument("--max-tokens", type=int, default=None,
                   help=f"(default {C.DEFAULT_MAX_TOKENS}; 320 for the local endpoint)")
    s.add_argument("--min-draft-tokens", type=int, default=None,
                   help=f"reject shorter drafts (default {C.MIN_DRAFT_TOKENS}; 40 for the local endpoint)")
    s.add_argument("--draft-attempts", type=int, default=None,
                   help="drafts to try before a record is skipped (default 1, the reference; 3 for the local "
                        "endpoint); every attempt is stored")
    s.add_argument("--accept-cut-drafts", action=argparse.BooleanOptionalAction, default=None,
                   help="keep drafts cut off at --max-tokens, trimmed to whole paragraphs (base models; "
                        "default only for the local endpoint)")
    s.add_argument("--prompts-dir", type=Path, default=None, help="override prompt files (<lang>/<name>.txt)")
    s.add_argument("--seed", type=int, default=None, help="seed for trigger phrases and jitter")

    sc = p.add_argument_group("scorer")
    sc.add_argument("--scorer-model", default=DEMO_MODEL, help="hub id, local folder or .gguf file")
    sc.add_argument("--scorer-threads", type=int, default=None, help="torch CPU threads")
    sc.add_argument("--scorer-dtype", choices=["auto", "float32", "bfloat16"], default="auto",
                    help="auto: bfloat16 on CUDA, float32 on CPU")
    sc.add_argument("--scorer-device", default=None, help="default: cuda when present, else cpu")
    sc.add_argument("--scorer-chat-format", default=None, help="when the scorer's tokenizer has no chat template")
    sc.add_argument("--scorer-max-batch-tokens", type=int, default=16384, help="padded tokens per forward pass")
    sc.add_argument("--scorer-url", default=None, help="use a running scorer (python -m scorer.server) instead")

    p.add_argument("--no-dashboard", action="store_true", help="plain log lines instead of the live dashboard")
    return p


def _json_object(text: str) -> dict:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise argparse.ArgumentTypeError(f"not JSON: {exc}") from None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError("must be a JSON object")
    return value


def config_from_args(a: argparse.Namespace) -> C.RunConfig:
    defaults = LOCAL_DEFAULTS if a.endpoint == LOCAL else REMOTE_DEFAULTS
    for name, value in defaults.items():
        if getattr(a, name) is None:
            setattr(a, name, value)
    for name in ("concurrency", "max_steps", "expansions", "max_tokens", "draft_attempts"):
        if getattr(a, name) < 1:
            raise ConfigError(f"--{name.replace('_', '-')} must be at least 1")
    if a.endpoint != LOCAL and not a.endpoint.startswith(("http://", "https://")):
        raise ConfigError(f"--endpoint {a.endpoint!r} is not a URL: use http://HOST:PORT/v1, or 'local'")
    stem = a.input.stem
    return C.RunConfig(
        input=a.input,
        db=a.db or f"runs/{stem}.db",
        out=a.out or Path(f"runs/{stem}.jsonl"),
        generator=C.GeneratorConfig(
            endpoint=a.endpoint, api_key=a.api_key or os.environ.get("OPENAI_API_KEY"), model=a.model,
            mode=a.mode, tokenizer=a.generator_tokenizer, chat_format=a.chat_format, edit_prefill=a.edit_prefill,
            sampling=C.Sampling(a.temperature, a.top_p, a.top_k, a.max_tokens), extra_body=a.extra_body,
            timeout_s=a.timeout,
            rps=a.rps, retry=C.RetryPolicy(max_retries=a.max_retries),
        ),
        search=C.SearchConfig(a.stop_ppl, a.max_steps, a.expansions, a.min_draft_tokens, a.accept_cut_drafts,
                              a.draft_attempts),
        scorer=C.ScorerConfig(model=a.scorer_model, threads=a.scorer_threads, dtype=a.scorer_dtype,
                              device=a.scorer_device, chat_format=a.scorer_chat_format,
                              max_batch_tokens=a.scorer_max_batch_tokens, url=a.scorer_url),
        prompts_dir=a.prompts_dir, concurrency=a.concurrency, dashboard=not a.no_dashboard,
        force=a.force, seed=a.seed,
    )


def scorer_args(cfg: C.RunConfig) -> list[str]:
    sc = cfg.scorer
    args = ["--model", sc.model, "--dtype", sc.dtype, "--max-batch-tokens", str(sc.max_batch_tokens)]
    for flag, value in (("--threads", sc.threads), ("--device", sc.device), ("--chat-format", sc.chat_format),
                        ("--prompts-dir", cfg.prompts_dir)):
        if value is not None:
            args += [flag, str(value)]
    return args


def log_path(db: str, service: str) -> Path:
    """Where a child service writes its log: beside a SQLite database, else under runs/."""
    return Path(f"{db}.{service}.log") if "://" not in db else Path(f"runs/{service}.log")


async def run(cfg: C.RunConfig, display: Display, stats: Stats) -> int:
    records = read_records(cfg.input)  # validates everything before anything is written
    prompts = PromptSet(cfg.prompts_dir)
    rng = random.Random(cfg.seed)
    services: list[ChildService] = []
    store: Store | None = None
    scorer: ScorerClient | None = None
    generator: Generator | None = None
    try:
        if cfg.generator.endpoint == LOCAL:
            display.log(DEMO_NOTICE)
            stats.phase = "starting local endpoint"
            local = ChildService("local endpoint", "agents.local_server", [], log_path(cfg.db, "endpoint"))
            services.append(local)
            cfg = replace(cfg, generator=replace(cfg.generator, endpoint=await local.start()))
        generator = Generator(cfg.generator, stats, rng, max_connections=max(64, 4 * cfg.concurrency))
        stats.phase = "connecting"
        await generator.start()
        fingerprint = cfg.fingerprint(prompts.fingerprint())
        fingerprint["generator_model"] = generator.model
        store = Store.open(cfg.db)
        start = store.begin_run(fingerprint, str(cfg.input), records, force=cfg.force)
        if start.resumed:
            display.log(f"resumed run in {cfg.db}: {start.to_run} records to finish, {start.done} done, "
                        f"{start.steps_kept} steps kept" + (f" ({', '.join(start.changes)})" if start.changes else ""))
        stats.total, stats.already_done = start.total, start.total - start.to_run
        display.log(f"generator: {generator.model} at {cfg.generator.endpoint} ({cfg.generator.mode} mode)")

        stats.phase = "starting scorer"
        if cfg.scorer.url:
            url = cfg.scorer.url
        else:
            display.log(f"starting the scorer ({cfg.scorer.model}); log: {log_path(cfg.db, 'scorer')}")
            process = ChildService("scorer", "scorer.server", scorer_args(cfg), log_path(cfg.db, "scorer"))
            services.append(process)
            url = await process.start()
        scorer = ScorerClient(url)

        stats.phase = "searching"
        searcher = RecordSearch(cfg.search, generator, scorer, store, prompts, stats, rng,
                                edit_prefill=cfg.generator.edit_prefill,
                                prefill_supported=cfg.generator.mode == "completions")
        gate = asyncio.Semaphore(cfg.concurrency)

        async def one(rec) -> None:
            async with gate:
                stats.running += 1
                try:
                    status = await searcher.run(rec)
                finally:
                    stats.running -= 1
                if status == RecordStatus.failed:
                    stats.failed += 1

        tasks = [asyncio.create_task(one(rec)) for rec in store.records_to_run(start.run_id)]
        ticker = asyncio.create_task(_tick(display))
        try:
            await asyncio.gather(*tasks)
        finally:
            ticker.cancel()
            for t in tasks:
                t.cancel()
        stats.phase = "finished"
        n = write_jsonl(store, start.run_id, cfg.out)
        display.log(f"wrote {n} records to {cfg.out}")
        problems = store.unfinished_problems(start.run_id)
        for rec in problems:
            display.log(f"  record {rec.key}: {rec.status.value}: {rec.error}")
        return EXIT_FAILED_RECORDS if any(r.status == RecordStatus.failed for r in problems) else EXIT_OK
    finally:
        closers = [scorer and scorer.aclose(), generator and generator.aclose(), *(s.stop() for s in services)]
        for closer in closers:
            if closer is not None:
                with contextlib.suppress(Exception):
                    await closer
        if store is not None:
            store.close()


async def _tick(display: Display) -> None:
    while True:
        display.tick()
        await asyncio.sleep(1.0)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    stats = Stats()
    try:
        cfg = config_from_args(args)
        with Display(stats, str(cfg.input), live=None if cfg.dashboard else False) as display:
            code = asyncio.run(run(cfg, display, stats))
    except KeyboardInterrupt:
        print(f"reer: interrupted; progress is saved, run the same command to resume. {summary_line(stats)}",
              file=sys.stderr)
        return EXIT_INTERRUPTED
    except (ReerError, ScorerError, StoreError, PromptError, ServiceError) as exc:
        print(f"reer: error: {exc}", file=sys.stderr)
        return EXIT_ERROR
    print(summary_line(stats))
    return code


if __name__ == "__main__":
    sys.exit(main())
