"""One endpoint's requests fitted to its context window (``agents.generation.context``), over HTTP.

At preflight the endpoint's context is read where its server lists it; each request then asks
for the output length that fits, and a refusal for length teaches the window and is sent again
only changed (a smaller length), never as it was.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Sequence

import httpx
import openai

from agents.errors import PromptTooLong
from agents.generation.context import Window, listed_context, parse_refusal

if TYPE_CHECKING:
    from agents.generation.generator import Generator

LENGTH_REFUSAL_STATUS = frozenset({400, 413})
LISTING_TIMEOUT_S = 10.0  # what the server lists is asked once at preflight: a hung server holds it no longer


def prompt_text(messages: Sequence[dict[str, str]], prefill: str) -> str:
    """What a prompt's tokens are counted from: every message, and the prefill."""
    return "\n".join(m.get("content") or "" for m in messages) + prefill


async def _get_json(client: openai.AsyncOpenAI, url: str, timeout_s: float) -> Any:
    """A GET's JSON body, or None: a server that does not answer it lists nothing there."""
    try:
        resp = await client.get(url, cast_to=httpx.Response, options={"timeout": timeout_s})
        return resp.json()
    except (openai.OpenAIError, httpx.HTTPError, ValueError):
        return None


async def learn_listed(e: Generator) -> None:
    """The endpoint's context where its server lists it (``--context-length`` wins)."""
    if e.window.context is not None:
        return
    root = str(e._client.base_url).rstrip("/").removesuffix("/v1")
    timeout_s = min(e.cfg.timeout_s, LISTING_TIMEOUT_S)
    props = await _get_json(e._client, f"{root}/props", timeout_s)  # llama.cpp, outside /v1
    models = await _get_json(e._client, "/models", timeout_s)
    listed = listed_context(models, props, e.model)
    if listed is not None:
        e.window.context, e.window.source = listed, "listed by the server"


async def _sent(e: Generator, path: str, body: dict, size: int) -> httpx.Response:
    """The request sent; while the context is not known, one larger than any answered so far goes
    alone on this endpoint, so that one refusal teaches it before others meet the same one."""
    window = e.window
    if window.context is None and size > window.proven:
        async with window.gate:
            if window.context is None and size > window.proven:
                resp = await e._client.post(path, cast_to=httpx.Response, body=body)
                window.proven = max(window.proven, size)
                return resp
        raise ContextLearned  # learned or proven meanwhile: fitted again
    return await e._client.post(path, cast_to=httpx.Response, body=body)


class ContextLearned(Exception):
    """A request that waited for another to teach the window: fitted again before it is sent."""


async def post_fitted(e: Generator, messages: Sequence[dict[str, str]], prefill: str, n: int, stop: list[str],
                      asked: int) -> httpx.Response:
    """The request sent to ``e`` asking for the output length that fits its context. A refusal
    for length is learned from and the request sent again asking less; where it cannot ask
    less, or its prompt alone does not fit, PromptTooLong (never sent again unchanged)."""
    text = prompt_text(messages, prefill)
    window: Window = e.window
    while True:
        try:
            fitted = window.fit(text, asked)
        except PromptTooLong:
            e.counts.too_long += 1
            raise
        if fitted < asked and (window.said_cap is None or fitted < window.said_cap // 2):
            window.said_cap = fitted
            e.log(f"the endpoint {e.cfg.endpoint}: {window.describe()}; a request whose prompt is about "
                  f"{window.tokens(text)} tokens asks for {fitted} tokens, not --max-tokens {asked}")
        path, body = e._body(messages, prefill, n, stop, fitted)
        try:
            return await _sent(e, path, body, window.tokens(text) + fitted)
        except ContextLearned:
            continue
        except openai.APIStatusError as exc:
            refusal = parse_refusal(exc.message, exc.body) if exc.status_code in LENGTH_REFUSAL_STATUS else None
            if refusal is None:
                raise
            before = window.context
            window.learn(refusal, text, fitted)
            e.counts.length_refusals += 1
            if before != window.context:
                e.log(f"the endpoint {e.cfg.endpoint} refused a request for length: {window.describe()}")
            try:
                again = window.fit(text, asked)
            except PromptTooLong as too_long:
                raise PromptTooLong(f"{too_long} (the server: {exc.message})") from exc
            if again >= fitted:
                raise PromptTooLong(f"refused for length, and no smaller request fits: {exc.message}") from exc


def roomier_than(small: Generator, live: Sequence[Generator]) -> list[Generator]:
    """The endpoints whose context may hold a prompt too long for ``small``'s."""
    known = small.window.context or 0
    return [e for e in live if e is not small and (e.window.context is None or e.window.context > known)]
