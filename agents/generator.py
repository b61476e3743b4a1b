"""The generator: any OpenAI-compatible endpoint (vLLM, llama.cpp, OpenAI), over ``openai``.

Two modes. ``chat`` sends messages and works everywhere, but cannot prefill the assistant turn.
``completions`` renders the chat itself (the generator tokenizer's template, or a built-in
format) and appends the prefill, as the reference does. openai/httpx errors are translated here,
once, into ``EndpointError``/``RetryableError``; retries with backoff happen here too.
"""

from __future__ import annotations

import asyncio
import email.utils
import random
import time
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import httpx
import openai
from asyncio_throttle import Throttler

from agents.breaker import CircuitBreaker
from agents.config import GeneratorConfig
from agents.errors import ConfigError, EndpointError, FatalEndpointError, RetryableError
from agents.pool import ClientPool, http_client
from agents.stats import Stats
from prompts import render_chat

Message = dict[str, str]
RETRYABLE_STATUS = frozenset({408, 409, 425, 429, 500, 502, 503, 504})


@dataclass(frozen=True)
class Generation:
    """One choice of one request. ``text`` excludes the prefill."""

    text: str
    finish_reason: str | None
    model: str
    prompt_tokens: int | None
    completion_tokens: int | None
    latency_s: float


class Generator:
    def __init__(self, cfg: GeneratorConfig, stats: Stats | None = None, rng: random.Random | None = None,
                 max_connections: int = 64, breaker: CircuitBreaker | None = None):
        self.cfg = cfg
        self.breaker = breaker or CircuitBreaker()
        self.stats = stats or Stats()
        self.rng = rng or random.Random()
        self.model = cfg.model or ""
        self._n_supported = True  # until the server shows otherwise
        self._render: Callable[[Sequence[Message]], str] | None = None
        self._throttler = Throttler(rate_limit=cfg.rps, period=1.0) if cfg.rps else None
        def make(connections: int) -> openai.AsyncOpenAI:
            http = http_client(connections, httpx.Timeout(cfg.timeout_s, connect=min(cfg.timeout_s, 30.0)))
            return openai.AsyncOpenAI(base_url=cfg.endpoint, api_key=cfg.api_key or "EMPTY", max_retries=0,
                                      http_client=http)

        self._pool = ClientPool(make, max_connections)

    async def start(self) -> None:
        """Resolve the model name and, in completions mode, how to render the chat."""
        if not self.model:
            models = await self._with_retries(lambda: self._pool.first.models.list())
            names = [m.id for m in models.data]
            if not names:
                raise ConfigError(f"the endpoint {self.cfg.endpoint} lists no models; pass --model")
            self.model = names[0]
        if self.cfg.mode == "completions":
            self._render = _chat_renderer(self.cfg)

    async def aclose(self) -> None:
        for client in self._pool.clients:
            await client.close()

    async def generate(self, messages: Sequence[Message], prefill: str, n: int, stop: list[str]) -> list[Generation]:
        """``n`` samples for one prompt: one request with ``n`` when the server honours it,
        else parallel single requests (and the server is remembered as not supporting ``n``)."""
        out: list[Generation] = []
        if n > 1 and self._n_supported:
            try:
                out = await self._request(messages, prefill, n, stop)
            except EndpointError as exc:
                if exc.status != 400:
                    raise
                self._n_supported = False  # a 400 for n>1: retry as single requests
            if len(out) < n:
                self._n_supported = False
        missing = n - len(out)
        if missing:
            parts = await asyncio.gather(*(self._request(messages, prefill, 1, stop) for _ in range(missing)))
            out += [g for part in parts for g in part]
        return out[:n]

    async def _request(self, messages: Sequence[Message], prefill: str, n: int, stop: list[str]) -> list[Generation]:
        s = self.cfg.sampling
        body: dict[str, Any] = dict(model=self.model, temperature=s.temperature, top_p=s.top_p,
                                    max_tokens=s.max_tokens, n=n)
        if stop:
            body["stop"] = stop
        if s.top_k > 0:  # vLLM/llama.cpp extension; 0 leaves it out (OpenAI rejects it)
            body["top_k"] = s.top_k
        body.update(self.cfg.extra_body)
        if self._render is not None:
            path, body["prompt"] = "/completions", self._render(messages) + prefill
        else:
            path, body["messages"] = "/chat/completions", list(messages)

        async def call() -> list[Generation]:
            t0 = time.monotonic()
            # The SDK's plain ``post`` (its documented way to send a custom body): the same
            # errors and auth as ``create``, without re-validating the request's parameters
            # and building typed objects, which cost more CPU than the rest of a search step.
            async with self._pool.client() as client:
                resp = await client.post(path, cast_to=httpx.Response, body=body)
            data = resp.json()  # not JSON: ValueError, retried
            if not isinstance(data, dict):
                raise RetryableError("the endpoint returned a body that is not a JSON object")
            choices = data.get("choices") or []
            if self._render is not None:
                texts = [(c.get("text") or "", c.get("finish_reason")) for c in choices]
            else:
                texts = [((c.get("message") or {}).get("content") or "", c.get("finish_reason")) for c in choices]
            if not texts:
                raise RetryableError("the endpoint returned an empty 'choices' list")
            latency = time.monotonic() - t0
            usage = data.get("usage") or {}
            completion = usage.get("completion_tokens")
            per_choice = completion // len(texts) if completion else None
            self.stats.prompt_tokens += usage.get("prompt_tokens") or 0
            self.stats.completion_tokens += completion or 0
            return [Generation(t, fr, data.get("model") or self.model, usage.get("prompt_tokens"), per_choice, latency)
                    for t, fr in texts]

        return await self._with_retries(call)

    async def _with_retries(self, call: Callable[[], Any]) -> Any:
        """``call`` with retries. While the circuit breaker is open (the endpoint looks down for
        everyone) failures do not count against this request's retries: it waits instead. That
        holds for a request sent while the endpoint was down whose failure arrives after another
        request's success has closed the breaker again."""
        policy, breaker = self.cfg.retry, self.breaker
        attempt = 0
        while True:
            await self._wait_for_endpoint()
            down_when_sent = breaker.is_open()
            try:
                if self._throttler is not None:
                    async with self._throttler:
                        pass
                self.stats.requests += 1
                try:
                    out = await call()
                except openai.OpenAIError as exc:
                    raise _translate(exc) from exc
                except (httpx.HTTPError, ValueError) as exc:  # e.g. a body that is not JSON
                    raise RetryableError(f"bad response from the endpoint: {_short(str(exc))}") from exc
            except RetryableError as exc:
                counts = not (down_when_sent or breaker.is_open())
                breaker.record_failure(time.monotonic())
                self.stats.error(str(exc))
                if counts:
                    attempt += 1
                if attempt > policy.max_retries:
                    raise EndpointError(f"gave up after {policy.max_retries} retries: {exc}", exc.status) from exc
                self.stats.retries += 1
                await asyncio.sleep(policy.wait_s(max(attempt, 1), exc.retry_after_s, self.rng.random()))
                continue
            breaker.record_success()
            self.stats.endpoint_down = False
            return out

    async def _wait_for_endpoint(self) -> None:
        while (wait := self.breaker.wait_s(time.monotonic())) > 0:
            if self.breaker.gave_up(time.monotonic()):
                raise FatalEndpointError(
                    f"the endpoint {self.cfg.endpoint} has failed every request for "
                    f"{self.breaker.down_for_s(time.monotonic()):.0f} s; stopping (run again to resume)")
            self.stats.endpoint_down = True
            await asyncio.sleep(wait)


def _translate(exc: openai.OpenAIError) -> EndpointError:
    """openai's exceptions -> ours. Retryable: 429, 5xx, timeouts, dropped connections."""
    if isinstance(exc, openai.APITimeoutError):
        return RetryableError("request timed out")
    if isinstance(exc, openai.APIConnectionError):
        return RetryableError(f"connection failed: {exc.__cause__ or exc}")
    if isinstance(exc, openai.APIStatusError):
        status = exc.status_code
        message = f"HTTP {status} from the endpoint: {_short(exc.message)}"
        if status in RETRYABLE_STATUS:
            return RetryableError(message, status, _retry_after_s(exc.response.headers))
        if status in (401, 403):
            return FatalEndpointError(message + " (check --api-key / OPENAI_API_KEY)", status)
        if status == 404:
            return FatalEndpointError(message + " (check --endpoint, which must end in /v1, and --model)", status)
        return EndpointError(message, status)
    if isinstance(exc, openai.APIResponseValidationError):
        return RetryableError(f"malformed response: {_short(str(exc))}")
    return EndpointError(_short(str(exc)))


def _retry_after_s(headers: httpx.Headers) -> float | None:
    if (ms := headers.get("retry-after-ms")) is not None:
        try:
            return float(ms) / 1000
        except ValueError:
            pass
    value = headers.get("retry-after")
    if value is None:
        return None
    try:
        return float(value)
    except ValueError:
        parsed = email.utils.parsedate_to_datetime(value) if value else None
        return max(0.0, parsed.timestamp() - time.time()) if parsed else None


def _short(text: str, limit: int = 300) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[:limit] + "…"


def _chat_renderer(cfg: GeneratorConfig) -> Callable[[Sequence[Message]], str]:
    if cfg.tokenizer:
        from transformers import AutoTokenizer  # only completions mode needs it

        try:
            tok = AutoTokenizer.from_pretrained(cfg.tokenizer)
        except Exception as exc:
            raise ConfigError(f"cannot load --generator-tokenizer {cfg.tokenizer!r}: {exc}") from exc
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
