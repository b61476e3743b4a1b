"""The SDK's, httpx's and aiohttp's errors translated into ours, once, where they enter.

Retryable (``RetryableError``): 429, 5xx, timeouts, dropped or refused connections, bodies that
are not JSON. 401/403/404 can never succeed (``FatalEndpointError``); other 4xx are the
request's own (``EndpointError``, with the field the server names, if it does).
"""

from __future__ import annotations

import email.utils
import time
from typing import Any, Callable

import aiohttp
import httpx
import openai

from agents.errors import EndpointError, FatalEndpointError, RetryableError

RETRYABLE_STATUS = frozenset({408, 409, 425, 429, 500, 502, 503, 504})


async def translated(call: Callable[[], Any]) -> Any:
    """``call()``, with the SDK's and the transport's errors translated into ours."""
    try:
        return await call()
    except openai.OpenAIError as exc:
        raise _translate(exc) from exc
    except (httpx.HTTPError, ValueError) as exc:  # e.g. a body that is not JSON
        raise RetryableError(f"bad response from the endpoint: {_short(str(exc))}") from exc


def _translate(exc: openai.OpenAIError) -> EndpointError:
    """openai's exceptions -> ours. Retryable: 429, 5xx, timeouts, dropped connections."""
    refused = _refused_connection(exc)
    if refused is not None:
        return RetryableError(f"connection failed: {refused}")
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
            return FatalEndpointError(message + " (check --endpoint, which must end in /v1, --model, and --mode: "
                                                "OpenAI has no /v1/completions for chat models)", status)
        body = exc.body if isinstance(exc.body, dict) else {}
        error = body.get("error") if isinstance(body.get("error"), dict) else body
        param = error.get("param")
        return EndpointError(message, status, param=param if isinstance(param, str) else None)
    if isinstance(exc, openai.APIResponseValidationError):
        return RetryableError(f"malformed response: {_short(str(exc))}")
    return EndpointError(_short(str(exc)))


def _refused_connection(exc: BaseException) -> BaseException | None:
    """The connection error under ``exc``, if any. httpx-aiohttp reports a refused or
    unreachable connection (aiohttp's ClientConnectorError) as a connect *timeout*: say what
    it was."""
    seen = exc
    while seen is not None:
        if isinstance(seen, aiohttp.ClientConnectorError):
            return seen
        seen = seen.__cause__ or seen.__context__
    return None


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
