"""The command line of ``python -m agents.run``, and the run's config built from it once.

Each option is defined here once, with its default and its help; the scorer's options come
from ``scorer.settings``; options a user leaves unset take the endpoint's profile
(``agents.config``). Validation happens in ``config_from_args``, before anything starts. Any
option can also come from ``--config FILE`` (``agents.config_file``).
"""

from __future__ import annotations

import argparse
import os
from dataclasses import replace
from pathlib import Path

from agents import config as C
from agents.config import Prices
from agents.config_file import ENV, Repeat, json_object, read_config_file
from agents.config_file import dump_config as _dump_config
from agents.errors import ConfigError

LOCAL = "local"
# The run's own --max-context, --scoring-prompt and --single-segment-answer shape the search as
# much as the scorer, so they carry no --scorer- prefix; the request limits are the scorer's own.
SCORER_FLAGS = {"max_context": "--max-context", "scoring_prompt": "--scoring-prompt",
                "single_segment_answer": "--single-segment-answer"}
SCORER_SERVER_ONLY = ("prompts_dir", "max_body_mb", "max_items", "read_timeout_s", "max_large_requests")


def input_stem(path: Path) -> str:
    """The input's name for the default --db and --out: a file's stem, or a dataset's name and
    split (hf:org/name:test -> name-test)."""
    text = str(path)
    if not text.startswith("hf:"):
        return path.stem
    name, _, split = text.removeprefix("hf:").partition(":")
    return "-".join(p for p in (name.rstrip("/").rsplit("/", 1)[-1], split) if p) or "dataset"


def per_endpoint(flag: str, values: list | None, n: int) -> list:
    """A repeatable endpoint flag's value for each of ``n`` endpoints: given once, for all;
    else once per --endpoint, in their order."""
    if not values:
        return [None] * n
    if len(values) == 1:
        return values * n
    if len(values) != n:
        raise ConfigError(f"{flag} is given {len(values)} times for {n} endpoints: give it once for all, or once "
                          "per --endpoint in their order")
    return list(values)


class _Help(argparse.ArgumentDefaultsHelpFormatter):
    """Shows a default where there is one the help does not already state."""

    def _get_help_string(self, action: argparse.Action) -> str:
        if action.default in (None, False, argparse.SUPPRESS) or "default" in (action.help or ""):
            return action.help or ""
        return super()._get_help_string(action)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m agents.run",
                                description="Synthesize REER thinking for every record of an input file.",
                                formatter_class=_Help)
    _io_options(p.add_argument_group("input and output"))
    _endpoint_options(p.add_argument_group("generator endpoint"))
    _search_options(p.add_argument_group("search (defaults are the reference's)"))
    from scorer.settings import add_options as add_scorer_options  # only the run's parser needs the scorer's

    sc = p.add_argument_group("scorer (scorer.settings; the same options as python -m scorer.server)")
    add_scorer_options(sc, prefix="scorer-", flags=SCORER_FLAGS, skip=SCORER_SERVER_ONLY)
    sc.add_argument("--scorer-url", action=Repeat, default=None,
                    help="use a running scorer (reer scorer), or a vLLM server (a URL ending in /v1), instead; "
                         "repeat it for several: each record's requests go to one of them (--scorer-device "
                         "cuda:0,cuda:1 starts one per device instead)")
    sc.add_argument("--scorer-tokenizer", default=None,
                    help="a vLLM --scorer-url: the served model's tokenizer, to find the scored span (default: "
                         "--scorer-model)")
    sc.add_argument("--scorer-wait", type=float, default=C.DEFAULT_SCORER_WAIT_S, metavar="SECONDS",
                    help="when no --scorer-url answers (at the start, or mid-run while they restart), how long the "
                         "run waits for one before it stops; one of several not answering never holds the run")
    sc.add_argument("--scorer-token", default=os.environ.get("REER_SCORER_TOKEN"),
                    help="bearer token of a --scorer-url that requires one (env REER_SCORER_TOKEN)")
    add_price_options(p)
    _ray_options(p.add_argument_group("Ray (pip install 'reer[ray]')"))
    p.add_argument("--grace-s", type=float, default=C.DEFAULT_GRACE_S,
                   help="on Ctrl-C/SIGTERM, how long in-flight records may finish before they are cancelled")
    p.add_argument("--no-dashboard", action="store_true", help="plain log lines instead of the live dashboard")
    p.add_argument("--log-json", action="store_true",
                   help="write the run's log file (<db>.run.log) as JSON lines instead of text")
    p.add_argument("--config", type=Path, default=None,
                   help="options from a TOML, YAML or JSON file (keys: the long flags without dashes); flags and "
                        "environment variables override it")
    p.add_argument("--dump-config", action="store_true",
                   help="print the resolved options as a TOML file that reproduces this run (no secrets), and exit")
    return p


def add_price_options(p: argparse.ArgumentParser) -> None:
    """The endpoint's prices, for the cost a run, its status and its report show."""
    p.add_argument("--price-in", type=float, default=None, metavar="USD",
                   help="what the endpoint charges per million prompt tokens (shows the cost)")
    p.add_argument("--price-out", type=float, default=None, metavar="USD",
                   help="what the endpoint charges per million completion tokens")


def prices_from_args(a: argparse.Namespace) -> Prices | None:
    if a.price_in is None and a.price_out is None:
        return None
    if min(a.price_in or 0, a.price_out or 0) < 0:
        raise ConfigError("--price-in and --price-out cannot be negative")
    return Prices(a.price_in or 0.0, a.price_out or 0.0)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line, over the options of ``--config`` if one is given (ConfigError if the
    file cannot be used)."""
    p = build_parser()
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--config", type=Path, default=None)
    known, _ = pre.parse_known_args(argv)
    if known.config is not None:
        values = read_config_file(known.config, p)
        values = {k: v for k, v in values.items() if not (k in ENV and os.environ.get(ENV[k]))}
        p.set_defaults(**values)
        for action in p._actions:
            if action.dest in values:
                action.required = False
    return p.parse_args(argv)


def dump_config(a: argparse.Namespace) -> str:
    """The resolved options as TOML that ``--config`` reads back (``agents.config_file``)."""
    return _dump_config(a, build_parser())


def _io_options(io: argparse._ArgumentGroup) -> None:
    io.add_argument("--input", required=True, type=Path, help="records: .json (a list), .jsonl, .parquet, a Hugging Face dataset "
                                                                 "as hf:NAME[:SPLIT] (default split: train), or a "
                                                                 "datasets.save_to_disk folder")
    io.add_argument("--db", default=None, help="the run's store: a SQLite path or a SQLAlchemy URL "
                                               "(default: runs/<input name>.db)")
    io.add_argument("--out", type=Path, default=None, help="results JSONL (default: runs/<input name>.jsonl)")
    io.add_argument("--lease-s", type=float, default=C.DEFAULT_LEASE_S,
                    help="workers sharing a --db URL: how long a worker that stops answering keeps its records "
                         "before the others take them over")
    io.add_argument("--store-wait", type=float, default=C.DEFAULT_STORE_WAIT_S, metavar="SECONDS",
                    help="how long to ride out a database that went away (a restart, a failover, a network "
                         "hiccup), holding what is generated meanwhile; 0 stops at once")
    io.add_argument("--force", action="store_true", help="resume even if the config or input changed")
    io.add_argument("--retry-failed", action="store_true", help="run the records that failed earlier again")
    io.add_argument("--strict", action="store_true",
                    help="stop at the first bad input record (default: skip it and list it at the end)")


def _ray_options(g: argparse._ArgumentGroup) -> None:
    g.add_argument("--ray", nargs="?", const="auto", default=None, metavar="ADDRESS",
                   help="run the whole fleet on a Ray cluster from this one command: ADDRESS as ray.init takes it "
                        "(default auto: the cluster this node belongs to, or a new local one); needs a PostgreSQL --db")
    g.add_argument("--ray-workers", type=int, default=1, metavar="K", help="--ray: worker actors")
    g.add_argument("--ray-scorers", type=int, default=None, metavar="M",
                   help="--ray: scorer actors, each on a GPU of its own (default 1; 0 with --scorer-url)")


def _endpoint_options(g: argparse._ArgumentGroup) -> None:
    g.add_argument("--endpoint", action=Repeat, default=None,
                   help="OpenAI-compatible base URL ending in /v1 (env OPENAI_BASE_URL; default 'local': an embedded "
                        "llama.cpp server with the Gemma 3 270M demo model). Repeat it for several servers: each "
                        "request goes where it would finish first at their measured speed and load, and one that "
                        "is down is skipped")
    g.add_argument("--api-key", action=Repeat, default=None,
                   help="API key (env OPENAI_API_KEY; not needed by local servers); once for all endpoints, or once "
                        "per --endpoint in their order")
    g.add_argument("--model", action=Repeat, default=None,
                   help="generator model (default: the first the endpoint lists); once for all endpoints, or once "
                        "per --endpoint")
    g.add_argument("--mode", choices=["chat", "completions"], default=None,
                   help="chat: works everywhere; completions: prefilled assistant turn, as the reference "
                        "(default: chat; completions for the local endpoint)")
    g.add_argument("--generator-tokenizer", default=None, help="the generator's tokenizer: its chat template in completions mode, and each prompt's "
                        "exact token count against the context (else estimated)")
    g.add_argument("--chat-format", default=None, help="completions mode without a tokenizer: gemma, chatml or plain")
    g.add_argument("--edit-prefill", choices=["analyze", "refine"], default=None,
                   help="prefill edits up to <analyze> (instruct models) or <refine> (base models; default for "
                        "the local endpoint)")
    g.add_argument("--chat-prefill", choices=["auto", "continue", "trailing", "off"], default="auto",
                   help="chat mode: how the prefill reaches the server. continue: a trailing assistant message with "
                        "continue_final_message (vLLM, SGLang); trailing: the message alone (llama.cpp continues "
                        "it); off: no prefill; auto: continue if the preflight is accepted, else off")
    g.add_argument("--extra-body", type=json_object, default=None,
                   help="JSON object of server-specific request fields, e.g. '{\"min_p\": 0.05}'; null removes a "
                        "field reer sends, e.g. '{\"top_p\": null}' (local endpoint default: ignore_eos and "
                        "repeat_penalty 1.3)")
    g.add_argument("--concurrency", type=int, default=None,
                   help=f"records in flight (default {C.REFERENCE_PROFILE.concurrency}; {C.LOCAL_PROFILE.concurrency} for the local endpoint)")
    g.add_argument("--endpoint-concurrency", action=Repeat, type=int, default=None, metavar="N",
                   help="requests in flight at most on an endpoint (default: no ceiling): once for all endpoints, "
                        "or once per --endpoint in their order; 0 for none on that one")
    g.add_argument("--context-length", action=Repeat, type=int, default=None, metavar="TOKENS",
                   help="the generator's context window, prompt and output (default: as the server lists it, "
                        "else learned from its first refusal for length): once for all endpoints, or once per "
                        "--endpoint; requests ask for the output length that fits it")
    g.add_argument("--rps", type=float, default=None, help="request-rate limit (requests/s)")
    g.add_argument("--tpm", type=int, default=None,
                   help="token-rate limit: prompt + completion tokens per minute, as the server's usage counts "
                        "them (API tiers meter this); a request waits while the last minute is at the limit")
    g.add_argument("--timeout", type=float, default=C.DEFAULT_REQUEST_TIMEOUT_S, help="per-request timeout (s)")
    g.add_argument("--probe-timeout", type=float, default=C.DEFAULT_PROBE_TIMEOUT_S, metavar="SECONDS",
                   help="how long a preflight or health probe of an endpoint or scorer may take before the part "
                        "counts as not answering (hung) and the run goes on with the others")
    g.add_argument("--hang-floor", type=float, default=C.DEFAULT_HANG_FLOOR_S, metavar="SECONDS",
                   help="mid-run, a request is taken for hung past %g x what its endpoint or scorer was seen to "
                        "take for that much work, never sooner than this; it then goes to another part. A run "
                        "without progress this long says what it waits on" % C.HANG_MULTIPLE)
    g.add_argument("--max-retries", type=int, default=C.DEFAULT_MAX_RETRIES, help="retries on 429/5xx/timeouts")
    g.add_argument("--record-failures", type=int, default=C.DEFAULT_RECORD_FAILURES,
                   help="requests per record that may fail for good (after retries) before the record fails")


def _search_options(s: argparse._ArgumentGroup) -> None:
    s.add_argument("--stop-score", "--stop-ppl", dest="stop_score", type=float, default=C.DEFAULT_STOP_SCORE,
                   help="stop a record's search once its score (clipped mean NLL of the answer, 0 to 2) is below "
                        "this; 0 never stops early")
    s.add_argument("--max-steps", type=int, default=None,
                   help=f"segments visited per record (default {C.REFERENCE_PROFILE.search.max_steps}; {C.LOCAL_PROFILE.search.max_steps} for the local "
                        "endpoint)")
    s.add_argument("--expansions", type=int, default=C.DEFAULT_EXPANSIONS, help="candidates per step")
    s.add_argument("--temperature", type=float, default=C.DEFAULT_TEMPERATURE)
    s.add_argument("--top-p", type=float, default=C.DEFAULT_TOP_P)
    s.add_argument("--top-k", type=int, default=C.DEFAULT_TOP_K,
                   help="sent only when set, as the reference's requests have none (OpenAI rejects it)")
    s.add_argument("--max-tokens", type=int, default=None,
                   help=f"per generation (default {C.REFERENCE_PROFILE.generator.sampling.max_tokens}; {C.LOCAL_PROFILE.generator.sampling.max_tokens} "
                        "for the local endpoint)")
    s.add_argument("--min-draft-tokens", type=int, default=None,
                   help=f"reject shorter drafts (default {C.REFERENCE_PROFILE.search.min_draft_tokens}; {C.LOCAL_PROFILE.search.min_draft_tokens} for the "
                        "local endpoint)")
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


def config_from_args(a: argparse.Namespace) -> C.RunConfig:
    a.endpoint = a.endpoint or [os.environ.get("OPENAI_BASE_URL") or LOCAL]
    base = C.LOCAL_PROFILE if a.endpoint == [LOCAL] else C.REFERENCE_PROFILE
    g, sr = base.generator, base.search
    unset = {"mode": g.mode, "chat_format": g.chat_format, "edit_prefill": g.edit_prefill, "extra_body": g.extra_body,
             "max_tokens": g.sampling.max_tokens, "max_steps": sr.max_steps, "min_draft_tokens": sr.min_draft_tokens,
             "draft_attempts": sr.draft_attempts, "cut_drafts": sr.cut_drafts, "acceptance": sr.acceptance,
             "concurrency": base.concurrency}
    for name, value in unset.items():
        if getattr(a, name) is None:
            setattr(a, name, value)
    _check(a)
    keys = per_endpoint("--api-key", a.api_key or [os.environ.get("OPENAI_API_KEY")], len(a.endpoint))
    models = per_endpoint("--model", a.model, len(a.endpoint))
    ceilings = per_endpoint("--endpoint-concurrency", a.endpoint_concurrency, len(a.endpoint))
    if any(c is not None and c < 0 for c in ceilings):
        raise ConfigError("--endpoint-concurrency cannot be negative (0: no ceiling)")
    ceilings = [c or None for c in ceilings]
    contexts = per_endpoint("--context-length", a.context_length, len(a.endpoint))
    if any(c is not None and c < 1 for c in contexts):
        raise ConfigError("--context-length must be at least 1 (tokens, prompt and output)")
    from scorer.settings import from_namespace as scorer_settings

    try:
        settings = scorer_settings(a, prefix="scorer-", prompts_dir=str(a.prompts_dir) if a.prompts_dir else None)
    except ValueError as exc:
        raise ConfigError(f"scorer option: {exc}") from None
    stem = input_stem(a.input)
    generator = C.GeneratorConfig(
        endpoint=a.endpoint[0], api_key=keys[0], model=models[0], max_in_flight=ceilings[0],
        context_length=contexts[0],
        mode=a.mode, tokenizer=a.generator_tokenizer, chat_format=a.chat_format, edit_prefill=a.edit_prefill,
        chat_prefill=a.chat_prefill, sampling=C.Sampling(a.temperature, a.top_p, a.top_k, a.max_tokens),
        extra_body=a.extra_body,
        timeout_s=a.timeout,
        rps=a.rps, tpm=a.tpm, retry=C.RetryPolicy(max_retries=a.max_retries),
    )
    return C.RunConfig(
        input=a.input,
        db=a.db or f"runs/{stem}.db",
        out=a.out or Path(f"runs/{stem}.jsonl"),
        generator=generator,
        others=tuple(replace(generator, endpoint=u, api_key=k, model=m, max_in_flight=c, context_length=x)
                     for u, k, m, c, x in zip(a.endpoint[1:], keys[1:], models[1:], ceilings[1:], contexts[1:])),
        search=C.SearchConfig(a.stop_score, a.max_steps, a.expansions, a.min_draft_tokens, a.cut_drafts,
                              a.draft_attempts, a.acceptance),
        scorer=C.ScorerConfig(settings, urls=tuple(a.scorer_url or ()), token=a.scorer_token,
                            tokenizer=a.scorer_tokenizer, wait_s=a.scorer_wait),
        prompts_dir=a.prompts_dir, concurrency=a.concurrency, dashboard=not a.no_dashboard, log_json=a.log_json,
        force=a.force, seed=a.seed, retry_failed=a.retry_failed, strict=a.strict, grace_s=a.grace_s,
        record_failures=a.record_failures, prices=prices_from_args(a), lease_s=a.lease_s,
        store_wait_s=a.store_wait, ray=_ray_config(a),
        deadlines=C.Deadlines(probe_s=a.probe_timeout, floor_s=a.hang_floor),
    )


def _check(a: argparse.Namespace) -> None:
    """The values no run can use, refused before anything starts."""
    if a.store_wait < 0:
        raise ConfigError("--store-wait cannot be negative (0 stops at once when the database goes away)")
    if a.lease_s < 1:
        raise ConfigError("--lease-s must be at least 1 (a worker renews its lease 4 times per lease)")
    if a.probe_timeout <= 0 or a.hang_floor <= 0:
        raise ConfigError("--probe-timeout and --hang-floor must be positive (seconds)")
    if a.tpm is not None and a.tpm < 1:
        raise ConfigError("--tpm must be at least 1 (tokens per minute)")
    for name in ("concurrency", "max_steps", "expansions", "max_tokens", "draft_attempts", "record_failures"):
        if getattr(a, name) < 1:
            raise ConfigError(f"--{name.replace('_', '-')} must be at least 1")
    if not 0 <= a.stop_score <= C.MAX_SCORE:
        raise ConfigError(f"--stop-score {a.stop_score} is outside 0..{C.MAX_SCORE:g}: the score is a clipped mean "
                          f"NLL (the reference stops below {C.DEFAULT_STOP_SCORE})")
    for url in a.endpoint:
        if url == LOCAL and len(a.endpoint) > 1:
            raise ConfigError("--endpoint local is the demo server alone: give it without other endpoints")
        if url != LOCAL and not url.startswith(("http://", "https://")):
            raise ConfigError(f"--endpoint {url!r} is not a URL: use http://HOST:PORT/v1, or 'local'")
    if len(set(a.endpoint)) < len(a.endpoint):
        raise ConfigError("an --endpoint is given twice: give each server once")


def _ray_config(a: argparse.Namespace) -> C.RayConfig | None:
    scorers = a.ray_scorers if a.ray_scorers is not None else (0 if a.scorer_url else 1)
    if a.ray is None:
        if a.ray_scorers is not None or a.ray_workers != 1:
            raise ConfigError("--ray-workers and --ray-scorers go with --ray")
        return None
    if a.ray_workers < 1 or scorers < 0:
        raise ConfigError("--ray-workers must be at least 1 and --ray-scorers at least 0")
    if scorers and a.scorer_url:
        raise ConfigError("--ray-scorers starts scorers on the cluster, --scorer-url uses running ones: give one")
    if not scorers and not a.scorer_url:
        raise ConfigError("--ray-scorers 0 needs --scorer-url: the workers need a scorer")
    if a.endpoint == [LOCAL]:
        raise ConfigError("--ray needs --endpoint URL: the demo endpoint serves one machine")
    return C.RayConfig(a.ray, a.ray_workers, scorers)
