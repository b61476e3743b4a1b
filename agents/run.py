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
import re
import signal
import sys
import time
import traceback
from collections import Counter
from dataclasses import replace
from pathlib import Path

from agents import config as C
from agents.dashboard import Display, summary_line
from agents.errors import ConfigError, ReerError
from agents.export import write_jsonl
from agents.generator import Generator
from agents.records import read_records
from agents.stats import Stats
from agents.worker import RecordSearch, draft_stop
from prompts import SCORING_PROMPTS, PromptError, PromptSet
from agents.process import ChildService, ServiceError
from agents.scoring import SupervisedScorer
from scorer import ScorerClient, ScorerError
from scorer.loading import DEMO_MODEL
from scorer.span import SINGLE_SEGMENT_MODES
from store import RecordStatus, Store, StoreError

EXIT_OK, EXIT_FAILED_RECORDS, EXIT_ERROR, EXIT_INTERRUPTED = 0, 1, 2, 130
LOCAL = "local"

# The embedded endpoint serves a 270M *base* model: it cannot follow the edit instructions or
# close its </think>, so the prefill carries the structure, drafts stop at </think> and those cut
# at max_tokens are trimmed to whole paragraphs, and everything is kept short enough for 2 CPU
# cores. Applied to the options a user did not set; a remote endpoint gets the reference's
# defaults. It also stops at once (EOS) unless told not to, and loops without a repetition penalty.
LOCAL_DEFAULTS = {"mode": "completions", "chat_format": "gemma", "edit_prefill": "refine",
                  "cut_drafts": "trim", "acceptance": "strict", "max_tokens": 200, "max_steps": 2,
                  "concurrency": 5, "min_draft_tokens": 40, "draft_attempts": 3,
                  "extra_body": {"ignore_eos": True, "repeat_penalty": 1.3}}
REMOTE_DEFAULTS = {"mode": "chat", "chat_format": None, "edit_prefill": "analyze", "cut_drafts": "keep",
                   "acceptance": "reference", "min_draft_tokens": C.MIN_DRAFT_TOKENS, "draft_attempts": 1,
                   "extra_body": {},
                   "max_tokens": C.DEFAULT_MAX_TOKENS, "max_steps": C.DEFAULT_MAX_STEPS,
                   "concurrency": C.DEFAULT_CONCURRENCY}
NO_PREFILL_WARNING = (
    "WARNING: this endpoint cannot continue a prefilled assistant turn{why}, so drafts get no trigger phrase "
    "(\"Okay, I am given\" / \"Alright, the user\" / \"Alright\") and edits no lead-in: the data lacks the "
    "paper's injected human-like thinking. For REER data as the paper made it, use an endpoint that can "
    "(vLLM, SGLang, llama.cpp) or --mode completions.")
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
    io.add_argument("--retry-failed", action="store_true", help="run the records that failed earlier again")
    io.add_argument("--strict", action="store_true",
                    help="stop at the first bad input record (default: skip it and list it at the end)")

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
                   help="prefill edits up to <analyze> (instruct models) or <refine> (base models; default for "
                        "the local endpoint)")
    g.add_argument("--chat-prefill", choices=["auto", "continue", "trailing", "off"], default="auto",
                   help="chat mode: how the prefill reaches the server. continue: a trailing assistant message with "
                        "continue_final_message (vLLM, SGLang); trailing: the message alone (llama.cpp continues "
                        "it); off: no prefill; auto: continue if the preflight is accepted, else off")
    g.add_argument("--extra-body", type=_json_object, default=None,
                   help="JSON object of server-specific request fields, e.g. '{\"min_p\": 0.05}'; null removes a "
                        "field reer sends, e.g. '{\"top_p\": null}' (local endpoint default: ignore_eos and "
                        "repeat_penalty 1.3)")
    g.add_argument("--concurrency", type=int, default=None,
                   help=f"records in flight (default {C.DEFAULT_CONCURRENCY}; 5 for the local endpoint)")
    g.add_argument("--rps", type=float, default=None, help="request-rate limit (requests/s)")
    g.add_argument("--timeout", type=float, default=C.DEFAULT_REQUEST_TIMEOUT_S, help="per-request timeout (s)")
    g.add_argument("--max-retries", type=int, default=C.DEFAULT_MAX_RETRIES, help="retries on 429/5xx/timeouts")
    g.add_argument("--record-failures", type=int, default=C.DEFAULT_RECORD_FAILURES,
                   help="requests per record that may fail for good (after retries) before the record fails")

    s = p.add_argument_group("search (defaults are the reference's)")
    s.add_argument("--stop-ppl", type=float, default=C.DEFAULT_STOP_SCORE, help="stop below this score")
    s.add_argument("--max-steps", type=int, default=None,
                   help=f"(default {C.DEFAULT_MAX_STEPS}; 2 for the local endpoint)")
    s.add_argument("--expansions", type=int, default=C.DEFAULT_EXPANSIONS, help="candidates per step")
    s.add_argument("--temperature", type=float, default=C.DEFAULT_TEMPERATURE)
    s.add_argument("--top-p", type=float, default=C.DEFAULT_TOP_P)
    s.add_argument("--top-k", type=int, default=C.DEFAULT_TOP_K,
                   help="sent only when set, as the reference's requests have none (OpenAI rejects it)")
    s.add_argument("--max-tokens", type=int, default=None,
                   help=f"(default {C.DEFAULT_MAX_TOKENS}; 200 for the local endpoint)")
    s.add_argument("--min-draft-tokens", type=int, default=None,
                   help=f"reject shorter drafts (default {C.MIN_DRAFT_TOKENS}; 40 for the local endpoint)")
    s.add_argument("--draft-attempts", type=int, default=None,
                   help="drafts to try before a record is skipped (default 1, the reference; 3 for the local "
                        "endpoint); every attempt is stored")
    s.add_argument("--cut-drafts", choices=["keep", "trim", "reject"], default=None,
                   help="a draft cut off at --max-tokens: keep it whole (the reference), trim it to whole "
                        "paragraphs (base models; the local endpoint's default) or reject it")
    s.add_argument("--acceptance", choices=["reference", "strict"], default=None,
                   help="reference: no stop strings, the candidate after the last <refine> to the last </refine>, "
                        "empty refinements scored, the draft minimum over the whole generation; strict: stop at "
                        "</think> and </refine> (fewer tokens), empty refinements rejected, the minimum over the "
                        "thinking (default: reference; strict for the local endpoint)")
    s.add_argument("--prompts-dir", type=Path, default=None, help="override prompt files (<lang>/<name>.txt)")
    s.add_argument("--seed", type=int, default=None, help="seed for trigger phrases and jitter")

    sc = p.add_argument_group("scorer")
    sc.add_argument("--scorer-model", default=DEMO_MODEL, help="hub id, local folder or .gguf file")
    sc.add_argument("--scorer-threads", type=int, default=None, help="torch CPU threads")
    sc.add_argument("--scorer-dtype", choices=["auto", "float32", "bfloat16"], default="auto",
                    help="auto: bfloat16 on CUDA, float32 on CPU")
    sc.add_argument("--scorer-device", default=None, help="default: cuda when present, else cpu")
    sc.add_argument("--scorer-chat-format", default=None, help="when the scorer's tokenizer has no chat template")
    sc.add_argument("--scorer-max-batch-tokens", type=int, default=None,
                    help="tokens per forward pass, counted as rows x the longest row (default: 16384 on CPU, "
                         "65536 on CUDA)")
    sc.add_argument("--scorer-prefix-cache-mb", type=int, default=None,
                    help="memory for KV caches of prefixes kept across a record's steps, 0 for none "
                         "(default: 1024 on CPU, a tenth of the GPU's memory on CUDA)")
    sc.add_argument("--scorer-compile", action="store_true",
                    help="fuse each layer's norms and MLP with torch.compile, at load (for GPUs; little gain on CPU)")
    sc.add_argument("--scorer-url", default=None, help="use a running scorer (python -m scorer.server) instead")
    sc.add_argument("--scorer-token", default=os.environ.get("REER_SCORER_TOKEN"),
                    help="bearer token of a --scorer-url that requires one (env REER_SCORER_TOKEN)")
    sc.add_argument("--scoring-prompt", choices=list(SCORING_PROMPTS), default="brief",
                    help="what the scored answer is conditioned on: brief, a writing-thinking brief with the "
                         "elements of the reference's; short, a two-line instruction")
    sc.add_argument("--single-segment-answer", choices=list(SINGLE_SEGMENT_MODES), default="whole",
                    help="an answer of one segment: score it whole, or as the reference's code does (one "
                         "token, the newline after it, so the record stops at once)")
    sc.add_argument("--max-context", type=int, default=None,
                    help="longest scoring text in tokens (default: the scoring model's); records whose "
                         "question and answer do not fit are skipped, longer thinkings rejected")

    p.add_argument("--grace-s", type=float, default=C.DEFAULT_GRACE_S,
                   help="on Ctrl-C/SIGTERM, how long in-flight records may finish before they are cancelled")
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
    for name in ("concurrency", "max_steps", "expansions", "max_tokens", "draft_attempts", "record_failures"):
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
            chat_prefill=a.chat_prefill, sampling=C.Sampling(a.temperature, a.top_p, a.top_k, a.max_tokens),
            extra_body=a.extra_body,
            timeout_s=a.timeout,
            rps=a.rps, retry=C.RetryPolicy(max_retries=a.max_retries),
        ),
        search=C.SearchConfig(a.stop_ppl, a.max_steps, a.expansions, a.min_draft_tokens, a.cut_drafts,
                              a.draft_attempts, a.acceptance),
        scorer=C.ScorerConfig(model=a.scorer_model, threads=a.scorer_threads, dtype=a.scorer_dtype,
                              device=a.scorer_device, chat_format=a.scorer_chat_format,
                              max_batch_tokens=a.scorer_max_batch_tokens, prefix_cache_mb=a.scorer_prefix_cache_mb,
                              url=a.scorer_url, token=a.scorer_token, max_context=a.max_context,
                              compile=a.scorer_compile, prompt=a.scoring_prompt,
                              single_segment_answer=a.single_segment_answer),
        prompts_dir=a.prompts_dir, concurrency=a.concurrency, dashboard=not a.no_dashboard,
        force=a.force, seed=a.seed, retry_failed=a.retry_failed, strict=a.strict, grace_s=a.grace_s,
        record_failures=a.record_failures,
    )


def scorer_args(cfg: C.RunConfig) -> list[str]:
    sc = cfg.scorer
    args = ["--model", sc.model, "--dtype", sc.dtype, "--scoring-prompt", sc.prompt,
            "--single-segment-answer", sc.single_segment_answer]
    for flag, value in (("--threads", sc.threads), ("--device", sc.device), ("--chat-format", sc.chat_format),
                        ("--prompts-dir", cfg.prompts_dir), ("--max-context", sc.max_context),
                        ("--prefix-cache-mb", sc.prefix_cache_mb), ("--max-batch-tokens", sc.max_batch_tokens)):
        if value is not None:
            args += [flag, str(value)]
    return args + (["--compile"] if sc.compile else [])


def log_path(db: str, service: str) -> Path:
    """Where a child service writes its log: beside a SQLite database, else under runs/."""
    return Path(f"{db}.{service}.log") if "://" not in db else Path(f"runs/{service}.log")


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


class Shutdown:
    """Ctrl-C / SIGTERM: the first stops new work and lets in-flight records finish for up to
    ``grace_s``; the second (or the end of the grace period) cancels them. Every store write is
    a complete transaction, so cancelling at any await loses nothing."""

    def __init__(self, grace_s: float, display: Display, stats: Stats):
        self.grace_s, self.display, self.stats = grace_s, display, stats
        self.requested = False
        self.tasks: list[asyncio.Task] = []
        self.main: asyncio.Task | None = None
        self._signals = 0

    def install(self) -> None:
        loop = asyncio.get_running_loop()
        self.main = asyncio.current_task()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, self._on_signal)

    def _on_signal(self) -> None:
        self._signals += 1
        self.requested = True
        self.stats.phase = "stopping"
        if not self.tasks or self._signals > 1:
            self._cancel_all()
            return
        self.display.log(f"stopping: no new records; in-flight ones get {self.grace_s:.0f} s to finish "
                         "(Ctrl-C again to stop now). Progress is saved either way.")
        asyncio.get_running_loop().call_later(self.grace_s, self._cancel_all)

    def _cancel_all(self) -> None:
        pending = [t for t in self.tasks if not t.done()]
        for t in pending:
            t.cancel()
        if not self.tasks and self.main is not None:
            self.main.cancel()  # still starting up: nothing to finish


async def run(cfg: C.RunConfig, display: Display, stats: Stats) -> int:
    inputs = read_records(cfg.input, strict=cfg.strict)  # all validated before anything is written
    for problem in inputs.problems:
        display.log(f"skipping input record: {problem}")
    records = inputs.records
    prompts = PromptSet(cfg.prompts_dir)
    rng = random.Random(cfg.seed)
    shutdown = Shutdown(cfg.grace_s, display, stats)
    shutdown.install()
    services: list[ChildService] = []
    store: Store | None = None
    scorer: ScorerClient | SupervisedScorer | None = None
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
        endpoint = await generator.start(cfg.search.expansions, draft_stop(cfg.search.acceptance))
        display.log(f"generator: {generator.model} at {cfg.generator.endpoint} ({cfg.generator.mode} mode; "
                    f"{endpoint.describe()})")
        if not endpoint.prefills:
            why = f" ({endpoint.no_prefill_reason})" if endpoint.no_prefill_reason else " (--chat-prefill off)"
            display.log(NO_PREFILL_WARNING.format(why=why))
        fingerprint = cfg.fingerprint(prompts.fingerprint())
        fingerprint["generator_model"] = generator.model
        fingerprint["prefill"] = endpoint.prefills  # what shapes the drafts, whichever way it is sent
        store = Store.open(cfg.db)
        start = store.begin_run(fingerprint, str(cfg.input), records, force=cfg.force)
        if cfg.retry_failed:
            display.log(f"--retry-failed: {store.reset_failed(start.run_id)} failed records will run again")
        to_run = store.records_to_run(start.run_id)
        if start.resumed:
            display.log(f"resumed run in {cfg.db}: resumed {start.to_run} records, {start.steps_kept} steps kept, "
                        f"{start.done} done earlier" + (f" ({', '.join(start.changes)})" if start.changes else ""))
        stats.total, stats.already_done = start.total, start.total - len(to_run)

        stats.phase = "starting scorer"
        if cfg.scorer.url:
            scorer = ScorerClient(cfg.scorer.url, token=cfg.scorer.token)
        else:
            display.log(f"starting the scorer ({cfg.scorer.model}); log: {log_path(cfg.db, 'scorer')}")
            scorer = SupervisedScorer(ChildService("scorer", "scorer.server", scorer_args(cfg),
                                                   log_path(cfg.db, "scorer")), display.log)
            await scorer.start()

        searcher = RecordSearch(cfg.search, generator, scorer, store, prompts, stats, rng,
                                edit_prefill=cfg.generator.edit_prefill,
                                prefill_supported=generator.prefills, failure_budget=cfg.record_failures,
                                seed=cfg.seed)
        stats.phase = "checking"
        to_run = await searcher.precheck(to_run)
        stats.phase = "searching"
        gate = asyncio.Semaphore(cfg.concurrency)

        async def one(rec) -> None:
            async with gate:
                if shutdown.requested:
                    return  # stopping: leave it for the next run
                stats.running += 1
                try:
                    await searcher.run(rec)
                finally:
                    stats.running -= 1

        shutdown.tasks = [asyncio.create_task(one(rec)) for rec in to_run]
        ticker = asyncio.create_task(_tick(display))
        try:
            results = await asyncio.gather(*shutdown.tasks, return_exceptions=True)
        finally:
            ticker.cancel()
            for t in shutdown.tasks:
                t.cancel()
        fatal = [r for r in results if isinstance(r, Exception)]
        if fatal:
            raise fatal[0]
        unfinished = len(store.records_to_run(start.run_id))
        stats.phase = "stopped" if unfinished else "finished"
        n = write_jsonl(store, start.run_id, cfg.out)
        display.log(f"wrote {n} records to {cfg.out}")
        if unfinished:
            display.log(f"{unfinished} records unfinished: run the same command to resume them")
            return EXIT_INTERRUPTED
        problems = store.unfinished_problems(start.run_id)
        for rec in problems:
            display.log(f"  record {rec.key}: {rec.status.value}: {rec.error}")
        for problem in inputs.problems:
            display.log(f"  input: {problem}")
        if n == 0:
            display.log("no record produced a result; by reason:")
            for line in reasons_summary(problems):
                display.log(f"  {line}")
            return EXIT_FAILED_RECORDS
        failed = any(r.status == RecordStatus.failed for r in problems) or inputs.problems
        return EXIT_FAILED_RECORDS if failed else EXIT_OK
    finally:
        for closer in (scorer and scorer.aclose(), generator and generator.aclose(), *(s.stop() for s in services)):
            if closer is not None:
                with contextlib.suppress(Exception):
                    await closer
        if store is not None:
            store.close()


def reasons_summary(problems) -> list[str]:
    """Records that ended without a result, grouped by reason (numbers folded), most common first."""
    groups: Counter[str] = Counter()
    examples: dict[str, str] = {}
    for rec in problems:
        reason = f"{rec.status.value}: " + re.sub(r"\d+", "N", rec.error or "no reason recorded")
        groups[reason] += 1
        examples.setdefault(reason, rec.key)
    return [f"{count} x {reason} (e.g. record {examples[reason]})" for reason, count in groups.most_common()]


async def _tick(display: Display) -> None:
    while True:
        display.tick()
        await asyncio.sleep(1.0)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    stats = Stats()
    db = args.db or f"runs/{args.input.stem}.db"
    try:
        cfg = config_from_args(args)
        with Display(stats, str(cfg.input), live=None if cfg.dashboard else False) as display:
            code = asyncio.run(run(cfg, display, stats))
    except (KeyboardInterrupt, asyncio.CancelledError):
        code = EXIT_INTERRUPTED
    except (ReerError, ScorerError, StoreError, PromptError, ServiceError) as exc:
        print(f"reer: error: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except Exception as exc:  # a defect: one line for the user, the traceback for the report
        what = " ".join(str(exc).split())[:300]
        print(f"reer: error: unexpected {type(exc).__name__}: {what} ({unexpected_log(db, exc)}; progress is "
              "saved, run the same command to resume)", file=sys.stderr)
        return EXIT_ERROR
    if code == EXIT_INTERRUPTED:
        print(f"reer: interrupted; progress is saved, run the same command to resume. {summary_line(stats)}",
              file=sys.stderr)
        return code
    print(summary_line(stats))
    return code


if __name__ == "__main__":
    sys.exit(main())
