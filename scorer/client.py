"""The agents' side of the scorer: an async HTTP client (``agents.process`` runs the server).

Kept free of torch: importing this module never loads a model into the agents' event loop.
"""

from __future__ import annotations

import httpx

from scorer.errors import ScorerError, ScorerUnavailable, ScoringInputError

DEFAULT_SCORE_TIMEOUT_S = 3600.0  # a request waits in the queue behind every other record's


class ScorerClient:
    def __init__(self, url: str, timeout_s: float = DEFAULT_SCORE_TIMEOUT_S):
        self.url = url.rstrip("/")
        self._http = httpx.AsyncClient(timeout=httpx.Timeout(timeout_s, connect=10.0),
                                       limits=httpx.Limits(max_connections=256, max_keepalive_connections=256))

    async def score(self, question: str, thinking: str, answer: str, lang: str) -> float:
        item = {"question": question, "thinking": thinking, "answer": answer, "lang": lang}
        try:
            r = await self._http.post(f"{self.url}/score", json={"items": [item]})
        except httpx.HTTPError as exc:
            raise ScorerUnavailable(f"the scorer at {self.url} did not answer: {exc!r}") from exc
        if r.status_code == 422:
            raise ScoringInputError(r.json().get("error", r.text))
        if r.status_code != 200:
            raise ScorerError(f"the scorer failed (HTTP {r.status_code}): {r.text[:500]}")
        return float(r.json()["scores"][0])

    async def aclose(self) -> None:
        await self._http.aclose()
