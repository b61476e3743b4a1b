"""The agents' side of the scorer: an async HTTP client of ``scorer.protocol``
(``agents.services.process`` runs the server).

Kept free of torch: importing this module never loads a model into the agents' event loop.
"""

from __future__ import annotations

import asyncio
import urllib.request
from typing import Mapping

import aiohttp
import httpx
from httpx_aiohttp import AiohttpTransport

from pydantic import BaseModel, ValidationError

from scorer.errors import ScorerError, ScorerUnavailable, ScoringInputError
from scorer.protocol import (CheckItem, CheckRequest, CheckResponse, ErrorBody, Health, ScoreItem, ScoreRequest,
                             ScoreResponse)

DEFAULT_SCORE_TIMEOUT_S = 3600.0  # a request waits in the queue behind every other record's
# /health is answered by the server's event loop at once: one that takes longer is hung (a
# server that accepts connections and never answers), and counts as not answering.
DEFAULT_HEALTH_TIMEOUT_S = 30.0
MAX_IN_FLIGHT = 256  # requests at once: every record in flight may be waiting in the scorer's queue


def http_client(connections: int, timeout: httpx.Timeout, headers: Mapping[str, str] | None = None) -> httpx.AsyncClient:
    """An httpx client on aiohttp (httpx-aiohttp), measured faster than httpx's own transport at
    reer's request rates (bench/results/networking.json). httpx ignores the proxy variables when
    it is given a transport, so with a proxy set it keeps its own, which honours them and NO_PROXY."""
    limits = httpx.Limits(max_connections=connections, max_keepalive_connections=connections)
    transport = None if urllib.request.getproxies() else AiohttpTransport(limits=limits)
    return httpx.AsyncClient(timeout=timeout, headers=headers, limits=limits, transport=transport)


class ScorerClient:
    def __init__(self, url: str, timeout_s: float = DEFAULT_SCORE_TIMEOUT_S, token: str | None = None,
                 max_in_flight: int = MAX_IN_FLIGHT, health_timeout_s: float = DEFAULT_HEALTH_TIMEOUT_S):
        self.url = url.rstrip("/")
        self.health_timeout_s = health_timeout_s
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._http = http_client(max_in_flight, httpx.Timeout(timeout_s, connect=10.0), headers)

    async def health(self) -> Health:
        """What the scorer says of itself: ready or loading, its model, dtype and scoring prompt."""
        try:
            r = await asyncio.wait_for(self._http.get(f"{self.url}/health"), self.health_timeout_s)
        except asyncio.TimeoutError:
            raise ScorerUnavailable(f"the scorer at {self.url} accepted the connection but gave no answer "
                                    f"within {self.health_timeout_s:.0f} s (hung?)") from None
        except (httpx.HTTPError, aiohttp.ClientError) as exc:
            raise ScorerUnavailable(f"the scorer at {self.url} did not answer: {exc!r}") from exc
        if r.status_code == 401:
            raise ScorerError(f"the scorer at {self.url} refused the token (set --scorer-token / REER_SCORER_TOKEN)")
        try:
            return Health.model_validate(r.json())
        except ValueError as exc:
            raise ScorerError(f"the scorer at {self.url} answered /health with HTTP {r.status_code}, not a reer "
                              f"scorer's health: {r.text[:200]!r}") from exc

    async def score(self, question: str, thinking: str, answer: str, lang: str) -> float:
        return _one(await self.score_many(question, [thinking], answer, lang))

    async def score_many(self, question: str, thinkings: list[str], answer: str,
                         lang: str) -> list[float | ScoringInputError]:
        """Scores of several thinkings for one record (a step's candidates), in one request; an
        item the scorer cannot take (too long) comes back as its ``ScoringInputError``."""
        items = [ScoreItem(question=question, thinking=t, answer=answer, lang=lang) for t in thinkings]
        return [float(v) if not isinstance(v, ScoringInputError) else v
                for v in await self._per_item("/score", ScoreRequest, ScoreResponse, items, "scores")]

    async def check(self, question: str, answer: str, lang: str) -> int:
        """Tokens of the question and answer alone; ``ScoringInputError`` if they cannot fit."""
        return _one(await self.check_many([(question, answer, lang)]))

    async def check_many(self, items: list[tuple[str, str, str]]) -> list[int | ScoringInputError]:
        """``check`` for many (question, answer, lang) in one request; an item that cannot fit
        comes back as its ``ScoringInputError``."""
        return await self._per_item("/check", CheckRequest, CheckResponse,
                                    [CheckItem(question=q, answer=a, lang=lang) for q, a, lang in items], "tokens")

    async def _per_item(self, path: str, request: type[BaseModel], response: type[BaseModel], items: list,
                        key: str) -> list:
        """The server answers each item (a value, or an error where it cannot take the item), or
        422 when it can take none of them. A request the server finds too large (413) is split in
        halves; a single item too large for it is that item's ``ScoringInputError``."""
        try:
            body = response.model_validate(await self._post(path, request(items=items)))
        except ValidationError as exc:
            raise ScorerError(f"the scorer at {self.url} answered {path} in another shape: {exc.errors()[0]}") from exc
        except ScoringInputError as exc:
            return [exc] * len(items)
        except _TooLarge as exc:
            if len(items) == 1:
                return [ScoringInputError(f"too large for the scorer's request limits: {exc}")]
            half = len(items) // 2
            return [*await self._per_item(path, request, response, items[:half], key),
                    *await self._per_item(path, request, response, items[half:], key)]
        return [ScoringInputError(e) if e is not None else v for v, e in zip(getattr(body, key), body.errors)]

    async def _post(self, path: str, body: BaseModel) -> dict:
        try:
            r = await self._http.post(f"{self.url}{path}", content=body.model_dump_json(),
                                      headers={"Content-Type": "application/json"})
        except (httpx.HTTPError, aiohttp.ClientError) as exc:  # the few aiohttp errors httpx-aiohttp leaves
            raise ScorerUnavailable(f"the scorer at {self.url} did not answer: {exc!r}") from exc
        if r.status_code == 200:
            return r.json()
        error = _error(r)
        if r.status_code == 422:
            raise ScoringInputError(error)
        if r.status_code == 413:
            raise _TooLarge(error)
        if r.status_code == 401:
            raise ScorerError(f"the scorer at {self.url} refused the token (set --scorer-token / REER_SCORER_TOKEN)")
        if r.status_code in (408, 503):  # a slow upload, a scorer still loading: try again
            raise ScorerUnavailable(f"the scorer at {self.url} answered HTTP {r.status_code}: {error}")
        raise ScorerError(f"the scorer failed (HTTP {r.status_code}): {error}")

    async def aclose(self) -> None:
        await self._http.aclose()


class _TooLarge(Exception):
    """413: the request is over the scorer's body or item limit."""


def _error(r: httpx.Response) -> str:
    try:
        return ErrorBody.model_validate(r.json()).error
    except ValueError:
        return r.text[:500]


def _one(results: list):
    [result] = results
    if isinstance(result, ScoringInputError):
        raise result
    return result
