"""The generator: any OpenAI-compatible endpoint (vLLM, SGLang, llama.cpp, OpenAI), over ``openai``.

Two modes. ``chat`` sends messages; the prefill goes as a trailing assistant message that the
server continues (``continue_final_message`` for vLLM and SGLang; llama.cpp continues one by
itself), or not at all where the server cannot continue one (OpenAI). ``completions`` renders
the chat itself (the generator tokenizer's template, or a built-in format) and appends the
prefill, as the reference does.

Before any record, ``start`` sends one small *preflight* request with the run's exact
parameters: a refused field stops the run there, naming the field and the flag that changes
it, and the preflight learns what the endpoint supports (continuation, ``n``,
``max_completion_tokens``, thinking returned apart). openai/httpx errors are translated here,
once, into ``EndpointError``/``RetryableError``. Retries, and the choice of endpoint where a run
has several, are the router's (``agents.generation.router``): it owns the endpoints and hands each
call its ``send``; an endpoint knows nothing of the router.
"""

from __future__ import annotations

import asyncio
import random
import time
from dataclasses import dataclass
from typing import Any, Awaitable, Callable, Sequence

import httpx
import openai

from agents.config import PREFLIGHT_MAX_TOKENS, GeneratorConfig
from agents.errors import ConfigError, EndpointError, FatalEndpointError, RetryableError
from agents.generation.breaker import CircuitBreaker
from agents.generation.endpoint import (
    CONTINUE_FIELDS,
    NO_THINKING,
    PREFLIGHT_MESSAGES,
    PREFLIGHT_PREFILL,
    REASONING_FIELDS,
    THINKING_REFUSAL,
    EndpointInfo,
    continuation,
    no_prefill_hint,
    refusal_message,
    refused_field,
)
from agents.generation.context import Window
from agents.generation.fitting import learn_listed, post_fitted, prompt_text
from agents.generation.limits import Limits
from agents.generation.parse import merge_reasoning
from agents.generation.translate import translated
from agents.watch.stats import EndpointCounts, Stats
from prompts import render_chat
from prompts.tags import THINK_OPEN
from scorer.client import http_client

Message = dict[str, str]
# How a request reaches the endpoints: ``send(call, first, stay, tokens)`` runs ``call(endpoint)``
# on ``first`` and retries it there (``stay``) or wherever the router finds best then; ``tokens``,
# the output tokens asked for, sizes its deadline.
Send = Callable[[Callable[["Generator"], Awaitable[Any]], "Generator", bool, int | None], Awaitable[Any]]


async def send_once(call: Callable[["Generator"], Awaitable[Any]], first: "Generator", stay: bool = False,
                    tokens: int | None = None) -> Any:
    """One try on ``first``, its errors translated: an endpoint used without a router."""
    return await translated(lambda: call(first))


@dataclass(frozen=True)
class Generation:
    """One choice of one request. ``text`` excludes the prefill."""

    text: str
    finish_reason: str | None
    model: str
    prompt_tokens: int | None
    completion_tokens: int | None
    latency_s: float


def split_evenly(total: int | None, n: int) -> list[int | None]:
    """``total`` in ``n`` whole shares that add up to it, the larger ones first."""
    if total is None:
        return [None] * n
    q, r = divmod(total, n)
    return [q + (i < r) for i in range(n)]


class Generator:
    def __init__(self, cfg: GeneratorConfig, stats: Stats | None = None, rng: random.Random | None = None,
                 max_connections: int = 64, breaker: CircuitBreaker | None = None,
                 log: Callable[[str], None] | None = None):
        self.cfg = cfg
        self.breaker = breaker or CircuitBreaker()
        self.log = log or (lambda line: None)  # the endpoint's state changes, as they happen
        self.stats = stats or Stats()
        self.rng = rng or random.Random()
        self.model = cfg.model or ""
        self._n_supported = True  # until the server shows otherwise
        self._render: Callable[[Sequence[Message]], str] | None = None
        self._prefill = "completions" if cfg.mode == "completions" else "off"
        # Chat: the current name first (vLLM and SGLang deprecate max_tokens, OpenAI's reasoning
        # models refuse it); /v1/completions has max_tokens alone.
        self._max_tokens_field = "max_tokens" if cfg.mode == "completions" else "max_completion_tokens"
        self._thinking_off = False  # chat_template_kwargs enable_thinking false, for the prefill's sake
        self._thinking_field: str | None = None
        # What the router waits for before each request (the name is the router's).
        self.throttler = Limits(cfg.rps, cfg.tpm) if (cfg.rps or cfg.tpm) else None
        self.stats.rps_limit, self.stats.tpm_limit = cfg.rps, cfg.tpm
        self.in_flight = 0
        self.window = Window(cfg.context_length, count=_token_counter(cfg))
        self.counts = EndpointCounts(cfg.endpoint)
        self.stats.endpoints.append(self.counts)
        http = http_client(max_connections, httpx.Timeout(cfg.timeout_s, connect=min(cfg.timeout_s, 30.0)))
        self._client = openai.AsyncOpenAI(base_url=cfg.endpoint, api_key=cfg.api_key or "EMPTY", max_retries=0,
                                          http_client=http)

    async def start(self, n: int = 1, stop: Sequence[str] = (), send: Send = send_once) -> EndpointInfo:
        """Resolve the model name and how to render the chat, then run the preflight with ``n``
        choices and the ``stop`` strings the run will send."""
        if not self.model:
            models = await send(lambda _: self._client.models.list(), self, True, None)
            names = [m.id for m in models.data]
            if not names:
                raise ConfigError(f"the endpoint {self.cfg.endpoint} lists no models; pass --model")
            self.model = names[0]
        self.counts.model = self.model
        if self.cfg.mode == "completions":
            self._render = _chat_renderer(self.cfg)
            forms = ["completions"]
        elif self.cfg.chat_prefill == "auto":
            forms = ["continue", "off"]
        else:
            forms = [self.cfg.chat_prefill]
        no_prefill_reason = None
        for i, form in enumerate(forms):
            self._prefill, self._thinking_off = form, False
            try:
                await self._preflight(n, list(stop), send)
                break
            except FatalEndpointError:
                raise
            except EndpointError as exc:
                if exc.status is None or exc.status >= 500:
                    raise  # not a refusal: the endpoint is failing
                if i + 1 == len(forms):
                    raise self._refusal(exc) from exc
                # try the next form: a server that cannot continue
                no_prefill_reason = no_prefill_hint(str(exc), self.cfg.extra_body)
        await learn_listed(self)  # after the preflight, whose short deadline finds a hung server first
        self.info = EndpointInfo(self._prefill, self._n_supported, self._max_tokens_field, self._thinking_field,
                                 no_prefill_reason, self._thinking_off, self.window.describe())
        return self.info

    async def _preflight(self, n: int, stop: list[str], send: Send) -> None:
        """Small requests with the run's parameters: one of a single choice (with retries), then,
        when ``n`` > 1, one of ``n`` choices, once: a server that refuses ``n`` (llama.cpp
        answers it with a 400 or a 500) or ignores it gets single requests from then on."""
        prefill = PREFLIGHT_PREFILL if self._prefill != "off" else ""
        adjusted: set[str] = set()
        while True:
            try:
                [out] = await self._request(PREFLIGHT_MESSAGES, prefill, 1, stop, send, PREFLIGHT_MAX_TOKENS, stay=True)
                break
            except FatalEndpointError:
                raise
            except EndpointError as exc:
                fix = self._adjust(exc)
                if fix is None or fix in adjusted:
                    raise
                adjusted.add(fix)
        if prefill and self._prefill != "completions" and out.text.lstrip().startswith(THINK_OPEN):
            # A continuation never opens the block the prefill opened: the server closed the
            # prefilled turn and began a new one (llama.cpp without --jinja).
            raise EndpointError("the endpoint accepted the prefilled turn but began a new one instead of "
                                "continuing it", 400, param="messages")
        if self._max_tokens_field == "max_completion_tokens" and (out.completion_tokens or 0) > PREFLIGHT_MAX_TOKENS:
            self._max_tokens_field = "max_tokens"  # written past it: an older server that reads max_tokens alone
        if n > 1:
            try:
                out = await self._request(PREFLIGHT_MESSAGES, prefill, n, stop, send_once, PREFLIGHT_MAX_TOKENS)
                self._n_supported = len(out) >= n
            except FatalEndpointError:
                raise
            except EndpointError:
                self._n_supported = False

    def _adjust(self, exc: EndpointError) -> str | None:
        """Change the request as a refusal of the preflight asks, and name the change; None
        where nothing of reer's making can be changed."""
        if exc.status is None or exc.status >= 500:
            return None
        if THINKING_REFUSAL in str(exc) and self._prefill in ("continue", "trailing"):
            kwargs = self.cfg.extra_body.get("chat_template_kwargs")
            if isinstance(kwargs, dict) and "enable_thinking" in kwargs:
                return None  # the user's own choice: the warning names the flag
            self._thinking_off = True
            return "thinking"
        sent = self._body(PREFLIGHT_MESSAGES, "", 1, [], PREFLIGHT_MAX_TOKENS)[1]
        if self._render is None and refused_field(exc, sent) == self._max_tokens_field:
            self._max_tokens_field = {"max_tokens": "max_completion_tokens"}.get(self._max_tokens_field, "max_tokens")
            return "length"
        return None

    def _refusal(self, exc: EndpointError) -> ConfigError:
        sent = self._body(PREFLIGHT_MESSAGES, "", 1, [], PREFLIGHT_MAX_TOKENS)[1]
        return ConfigError(refusal_message(self.cfg.endpoint, exc, sent, self.cfg.extra_body))

    async def aclose(self) -> None:
        await self._client.close()

    async def generate(self, messages: Sequence[Message], prefill: str, n: int, stop: list[str],
                       send: Send = send_once) -> list[Generation]:
        """``n`` samples for one prompt: one request with ``n`` when the server honours it,
        else parallel single requests (and the server is remembered as not supporting ``n``)."""
        out: list[Generation] = []
        if n > 1 and self._n_supported:
            try:
                out = await self._request(messages, prefill, n, stop, send)
            except EndpointError as exc:
                if exc.status != 400:
                    raise
                self._n_supported = False  # a 400 for n>1: retry as single requests
            if len(out) < n:
                self._n_supported = False
        missing = n - len(out)
        if missing:
            parts = await asyncio.gather(*(self._request(messages, prefill, 1, stop, send) for _ in range(missing)))
            out += [g for part in parts for g in part]
        return out[:n]

    def _body(self, messages: Sequence[Message], prefill: str, n: int, stop: list[str],
              max_tokens: int | None = None) -> tuple[str, dict[str, Any]]:
        """The request's path and body: the run's sampling, the prefill in the form the endpoint
        takes, then ``extra_body`` (a ``None`` there removes the field)."""
        s = self.cfg.sampling
        body: dict[str, Any] = {"model": self.model, "temperature": s.temperature, "top_p": s.top_p,
                                self._max_tokens_field: max_tokens or s.max_tokens, "n": n}
        if stop:
            body["stop"] = stop
        if s.top_k is not None:  # a vLLM/llama.cpp extension: sent only when asked for
            body["top_k"] = s.top_k
        if self._render is not None:
            path, body["prompt"] = "/completions", self._render(messages) + prefill
        else:
            path, body["messages"] = "/chat/completions", list(messages)
            if prefill and self._prefill in ("continue", "trailing"):
                body["messages"].append({"role": "assistant", "content": prefill})
                if self._prefill == "continue":
                    body.update(CONTINUE_FIELDS)
        body.update(self.cfg.extra_body)
        if self._thinking_off and "messages" in body:
            body["chat_template_kwargs"] = {**(body.get("chat_template_kwargs") or {}), **NO_THINKING}
        return path, {k: v for k, v in body.items() if v is not None}

    async def _request(self, messages: Sequence[Message], prefill: str, n: int, stop: list[str], send: Send,
                       max_tokens: int | None = None, stay: bool = False) -> list[Generation]:
        """One request, sent here first; ``send`` may retry it here (``stay``) or on the
        endpoint the router finds best then, its body built for that endpoint."""

        async def call(e: Generator) -> list[Generation]:
            t0 = time.monotonic()
            # The SDK's plain ``post`` (its documented way to send a custom body): the same
            # errors and auth as ``create``, without re-validating the request's parameters
            # and building typed objects, which cost more CPU than the rest of a search step.
            resp = await post_fitted(e, messages, prefill, n, stop, max_tokens or e.cfg.sampling.max_tokens)
            data = resp.json()  # not JSON: ValueError, retried
            if not isinstance(data, dict):
                raise RetryableError("the endpoint returned a body that is not a JSON object")
            choices = data.get("choices") or []
            if e._render is not None:
                texts = [(c.get("text") or "", c.get("finish_reason")) for c in choices]
            else:
                texts = [(continuation(e._chat_text(c), prefill), c.get("finish_reason")) for c in choices]
            if not texts:
                raise RetryableError("the endpoint returned an empty 'choices' list")
            latency = time.monotonic() - t0
            usage = data.get("usage") or {}
            prompt, completion = usage.get("prompt_tokens"), usage.get("completion_tokens")
            e.window.observe(prompt_text(messages, prefill), prompt)
            self.stats.prompt_tokens += prompt or 0
            self.stats.completion_tokens += completion or 0
            e.counts.completion_tokens += completion or 0
            if e.throttler is not None and e.throttler.budget is not None:
                e.throttler.budget.spend((prompt or 0) + (completion or 0))
                self.stats.tokens_last_minute = e.throttler.budget.used()
            # A request's usage is for all its choices: its prompt is counted on the first output
            # only and its completion tokens shared out, so that sums over outputs are what the
            # endpoint billed (the API gives no per-choice counts).
            shares = split_evenly(completion, len(texts))
            return [Generation(t, fr, data.get("model") or e.model, prompt if i == 0 else None, shares[i], latency)
                    for i, (t, fr) in enumerate(texts)]

        return await send(call, self, stay, (max_tokens or self.cfg.sampling.max_tokens) * n)

    def _chat_text(self, choice: dict) -> str:
        message = choice.get("message") or {}
        content = message.get("content") or ""
        field = next((f for f in REASONING_FIELDS if message.get(f)), None)
        if field is None:
            return content
        self._thinking_field = field
        return merge_reasoning(content, message[field], choice.get("finish_reason"))


def _token_counter(cfg: GeneratorConfig) -> Callable[[str], int] | None:
    """A prompt's exact token count where the run names the generator's tokenizer."""
    if not cfg.tokenizer:
        return None
    tok = _tokenizer(cfg.tokenizer)
    return lambda text: len(tok(text, add_special_tokens=False)["input_ids"])


def _tokenizer(name: str) -> Any:
    from transformers import AutoTokenizer  # only a run naming --generator-tokenizer needs it

    try:
        return AutoTokenizer.from_pretrained(name)
    except Exception as exc:
        raise ConfigError(f"cannot load --generator-tokenizer {name!r}: {exc}") from exc


def _chat_renderer(cfg: GeneratorConfig) -> Callable[[Sequence[Message]], str]:
    if cfg.tokenizer:
        tok = _tokenizer(cfg.tokenizer)
        if not tok.chat_template:
            raise ConfigError(f"--generator-tokenizer {cfg.tokenizer!r} has no chat template; use --chat-format")
        bos = tok.bos_token or ""

        def render(msgs: Sequence[Message]) -> str:
            text = tok.apply_chat_template(list(msgs), tokenize=False, add_generation_prompt=True)
            # The server tokenizes the prompt and adds its own BOS: don't send a second one.
            return text[len(bos):] if bos and text.startswith(bos) else text

        return render
    if cfg.chat_format:
        render_chat([], cfg.chat_format)  # fail now on an unknown name
        return lambda msgs: render_chat(msgs, cfg.chat_format)
    raise ConfigError("completions mode needs --generator-tokenizer (its chat template) or --chat-format")
