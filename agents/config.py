"""Configuration: frozen dataclasses built once from the command line, and the defaults.

Every default of the search is the reference implementation's (``shared/REER_ALGORITHM.md``).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:  # an annotation only: the commands that read a run import this module, not the scorer's
    from scorer.settings import ScorerSettings

# --- the search (reference section 5) ---
DEFAULT_STOP_SCORE = 0.25  # clipped mean NLL; ≈ PPL 1.28
MAX_SCORE = 2.0  # every token's NLL is clipped at 2 (reference section 4)
DEFAULT_MAX_STEPS = 10
DEFAULT_EXPANSIONS = 2  # candidate rewrites per step
MIN_DRAFT_TOKENS = 100  # drafts with fewer generated tokens are rejected

# --- sampling (reference section 2) ---
DEFAULT_TEMPERATURE = 0.8
DEFAULT_TOP_P = 0.85
DEFAULT_TOP_K = None  # the reference lists 40 but never sends it: its servers sample without top-k
DEFAULT_MAX_TOKENS = 8000
PREFLIGHT_MAX_TOKENS = 16  # the preflight request checks the parameters, not the model's writing

# --- transport ---
DEFAULT_CONCURRENCY = 32  # records in flight
DEFAULT_REQUEST_TIMEOUT_S = 600.0  # one generation can be 8K tokens on a busy server
DEFAULT_MAX_RETRIES = 6
DEFAULT_RETRY_BASE_S = 1.0
DEFAULT_RETRY_MAX_S = 60.0
DEFAULT_RECORD_FAILURES = 3  # requests per record that may fail after all retries
DEFAULT_GRACE_S = 30.0  # Ctrl-C: how long in-flight records may finish
# How long a worker's records stay its own without a heartbeat (it beats 4 times per lease): a
# worker that dies unannounced holds them this long, one stalled longer loses them.
DEFAULT_LEASE_S = 60.0
# How long a worker rides out a store that went away (a server restart, a failover, a network
# hiccup) before it stops; 0 stops at once. Five minutes covers a PostgreSQL restart or failover.
DEFAULT_STORE_WAIT_S = 300.0
# A part that accepts connections but never answers (a deadlocked GPU process, a frozen queue)
# would hold each request for --timeout. A probe (preflight, health) is tiny: seconds are plenty.
DEFAULT_PROBE_TIMEOUT_S = 30.0
# Mid-run, a request is taken for hung past HANG_MULTIPLE times what its part was seen to take for
# that much work (a generation: time per output token x the tokens asked for; a scoring request:
# a high percentile of its recent latencies), and never before the floor: a merely slow or long
# request is not mistaken for a hang.
# The same span of no progress at all makes the run's watchdog say what it waits on.
DEFAULT_HANG_FLOOR_S = 60.0
HANG_MULTIPLE = 4.0

GeneratorMode = Literal["chat", "completions"]
EditPrefill = Literal["analyze", "refine"]
# How a chat request carries the prefill: "continue" = a trailing assistant message with
# continue_final_message (vLLM, SGLang, recent llama.cpp); "trailing" = the trailing message
# alone (llama.cpp continues it by itself); "off" = no prefill; "auto" = decided by the preflight.
ChatPrefill = Literal["auto", "continue", "trailing", "off"]
# "reference": no close-tag stop strings, the last <refine> block, empty refinements scored, the
# draft minimum over the whole generation. "strict": stop at </think> and </refine> (fewer
# tokens), empty refinements rejected, the minimum over the thinking alone.
Acceptance = Literal["reference", "strict"]
CutDrafts = Literal["keep", "trim", "reject"]  # a draft cut at max_tokens: the reference keeps it


@dataclass(frozen=True)
class Deadlines:
    """How long a request waits for an answer before its part is taken for hung."""

    probe_s: float = DEFAULT_PROBE_TIMEOUT_S  # --probe-timeout: preflight and health probes
    floor_s: float = DEFAULT_HANG_FLOOR_S  # --hang-floor: no mid-run request is abandoned sooner; the watchdog's wait
    multiple: float = HANG_MULTIPLE

    def after_s(self, expected_s: float | None, cap_s: float) -> float:
        """A mid-run request's deadline: ``multiple`` x its expected time, at least the floor,
        at most ``cap_s`` (--timeout); ``cap_s`` alone where nothing is expected yet."""
        if expected_s is None:
            return cap_s
        return min(cap_s, max(self.floor_s, self.multiple * expected_s))


@dataclass(frozen=True)
class Prices:
    """What the endpoint charges, per million prompt and completion tokens."""

    prompt: float = 0.0
    completion: float = 0.0

    def cost(self, prompt_tokens: int, completion_tokens: int) -> float:
        return (prompt_tokens * self.prompt + completion_tokens * self.completion) / 1e6

    def describe(self, prompt_tokens: int, completion_tokens: int) -> str:
        return f"${self.cost(prompt_tokens, completion_tokens):,.2f}"


@dataclass(frozen=True)
class Sampling:
    temperature: float = DEFAULT_TEMPERATURE
    top_p: float = DEFAULT_TOP_P
    top_k: int | None = DEFAULT_TOP_K  # None: not sent
    max_tokens: int = DEFAULT_MAX_TOKENS


@dataclass(frozen=True)
class RetryPolicy:
    """When to retry a failed request and how long to wait (exponential backoff, full jitter)."""

    max_retries: int = DEFAULT_MAX_RETRIES
    base_s: float = DEFAULT_RETRY_BASE_S
    max_s: float = DEFAULT_RETRY_MAX_S

    def wait_s(self, attempt: int, retry_after_s: float | None, rand: float) -> float:
        """Seconds to wait before retry number ``attempt`` (1-based); ``rand`` in [0, 1)."""
        if retry_after_s is not None:
            return min(max(retry_after_s, 0.0), self.max_s)  # the server knows best
        return rand * min(self.max_s, self.base_s * 2 ** (attempt - 1))


@dataclass(frozen=True)
class GeneratorConfig:
    endpoint: str
    api_key: str | None = field(default=None, repr=False)  # never printed, logged or stored
    model: str | None = None  # None: the first model the endpoint lists
    mode: GeneratorMode = "chat"
    tokenizer: str | None = None  # completions mode: whose chat template builds the prompt
    chat_format: str | None = None  # completions mode without a tokenizer: a built-in format
    edit_prefill: EditPrefill = "analyze"
    chat_prefill: ChatPrefill = "auto"
    sampling: Sampling = field(default_factory=Sampling)
    extra_body: dict[str, Any] = field(default_factory=dict)  # server-specific fields; None removes one
    timeout_s: float = DEFAULT_REQUEST_TIMEOUT_S
    rps: float | None = None  # request-rate limit, requests per second
    tpm: int | None = None  # token-rate limit, prompt + completion tokens per minute (the server's usage)
    max_in_flight: int | None = None  # this endpoint's ceiling of requests in flight (--endpoint-concurrency)
    context_length: int | None = None  # tokens, prompt and output (--context-length); None: learned
    retry: RetryPolicy = field(default_factory=RetryPolicy)


@dataclass(frozen=True)
class SearchConfig:
    stop_score: float = DEFAULT_STOP_SCORE
    max_steps: int = DEFAULT_MAX_STEPS
    expansions: int = DEFAULT_EXPANSIONS
    min_draft_tokens: int = MIN_DRAFT_TOKENS
    cut_drafts: CutDrafts = "keep"
    draft_attempts: int = 1  # reference: one draft; a rejected one skips the record
    acceptance: Acceptance = "reference"


DEFAULT_SCORER_WAIT_S = 120.0  # a scorer started with the run loads its model meanwhile


@dataclass(frozen=True)
class ScorerConfig:
    settings: ScorerSettings  # what the run's scorer process is started with (scorer.settings)
    urls: tuple[str, ...] = ()  # scorers already running, instead of starting them
    token: str | None = field(default=None, repr=False)  # its bearer token, if it requires one
    tokenizer: str | None = None  # a vLLM scorer's tokenizer, where it is not the scorer model's
    wait_s: float = DEFAULT_SCORER_WAIT_S  # none of the --scorer-urls answers: how long the run waits


@dataclass(frozen=True)
class Profile:
    """The values of the options a user leaves unset, by kind of endpoint."""

    generator: GeneratorConfig
    search: SearchConfig
    concurrency: int


# A real endpoint: the reference's defaults, i.e. the dataclasses' own.
REFERENCE_PROFILE = Profile(GeneratorConfig(endpoint=""), SearchConfig(), DEFAULT_CONCURRENCY)
# The embedded demo endpoint serves a 270M *base* model: it cannot follow the edit instructions
# or close its </think>, so the prefill carries the structure (completions mode, edits prefilled
# up to <refine>), drafts stop at </think> and those cut at max_tokens are trimmed to whole
# paragraphs, and everything is short enough for 2 CPU cores. It also stops at once (EOS) unless
# told not to, and loops without a repetition penalty.
LOCAL_PROFILE = Profile(
    GeneratorConfig(endpoint="local", mode="completions", chat_format="gemma", edit_prefill="refine",
                    sampling=Sampling(max_tokens=200), extra_body={"ignore_eos": True, "repeat_penalty": 1.3}),
    SearchConfig(max_steps=2, min_draft_tokens=40, draft_attempts=3, cut_drafts="trim", acceptance="strict"),
    concurrency=5)


@dataclass(frozen=True)
class RayConfig:
    """``--ray``: the whole fleet on a Ray cluster (``agents.cluster``)."""

    address: str = "auto"  # as ray.init takes it; "auto" starts a local Ray when none runs
    workers: int = 1  # worker actors, each one worker of the run
    scorers: int = 1  # scorer actors, each on a GPU of its own (a CPU where the cluster has none)


@dataclass(frozen=True)
class RunConfig:
    input: Path
    db: str
    out: Path | None
    generator: GeneratorConfig
    search: SearchConfig
    scorer: ScorerConfig
    prompts_dir: Path | None = None
    concurrency: int = DEFAULT_CONCURRENCY
    dashboard: bool = True
    log_json: bool = False
    force: bool = False
    seed: int | None = None
    retry_failed: bool = False
    strict: bool = False
    grace_s: float = DEFAULT_GRACE_S
    record_failures: int = DEFAULT_RECORD_FAILURES
    prices: Prices | None = None  # what the endpoint charges, for the cost shown
    lease_s: float = DEFAULT_LEASE_S
    store_wait_s: float = DEFAULT_STORE_WAIT_S
    others: tuple[GeneratorConfig, ...] = ()  # more endpoints (--endpoint repeated): their URL, key and model
    ray: RayConfig | None = None  # --ray: run the fleet on Ray instead of as this one process
    deadlines: Deadlines = field(default_factory=Deadlines)

    @property
    def generators(self) -> tuple[GeneratorConfig, ...]:
        """Every endpoint's config: the first's settings, each its own URL, key and model."""
        return (self.generator, *self.others)

    def fingerprint(self, prompts: dict[str, str]) -> dict[str, Any]:
        """What shapes the results, stored with the run: resuming with another value is refused.

        Transport settings (endpoint URL, key, concurrency, rate, timeouts) may change freely.
        """
        g = self.generator
        return {
            "generator_model": g.model,
            "generator_mode": g.mode,
            "generator_tokenizer": g.tokenizer,
            "generator_chat_format": g.chat_format,
            "edit_prefill": g.edit_prefill,
            "sampling": asdict(g.sampling),
            "extra_body": g.extra_body,
            "search": asdict(self.search),
            "scorer_model": self.scorer.settings.model,
            "scorer_dtype": self.scorer.settings.dtype,
            "scorer_chat_format": self.scorer.settings.chat_format,
            "max_context": self.scorer.settings.max_context,
            "scoring_prompt": self.scorer.settings.scoring_prompt,
            "single_segment_answer": self.scorer.settings.single_segment_answer,
            "prompts": prompts,
        }
