"""The scorer as the agents see it: a client that survives the scorer process dying.

If the scorer process dies (out of memory, a segfault), the requests waiting on it fail with
``ScorerUnavailable``; the first of them restarts the process and every one of them is retried
against the new one. After ``max_restarts`` restarts the run stops with the reason; no record
is failed for it, so the next run resumes them.
"""

from __future__ import annotations

import asyncio
from typing import Callable

from agents.services.process import ChildService
from scorer import ScorerClient, ScorerUnavailable

DEFAULT_MAX_RESTARTS = 3
TRANSIENT_RETRIES = 5  # a live scorer that dropped a connection: retry before giving up
TRANSIENT_WAIT_S = 0.5


class SupervisedScorer:
    def __init__(self, service: ChildService, log: Callable[[str], None], max_restarts: int = DEFAULT_MAX_RESTARTS):
        self.service, self.log, self.max_restarts = service, log, max_restarts
        self.client: ScorerClient | None = None
        self.restarts = 0
        self._old: list[ScorerClient] = []  # closed at the end: other requests may still hold them
        self._lock = asyncio.Lock()

    async def start(self) -> None:
        self.client = ScorerClient(await self.service.start())

    async def score(self, question: str, thinking: str, answer: str, lang: str) -> float:
        return await self._call("score", question, thinking, answer, lang)

    async def score_many(self, question: str, thinkings: list[str], answer: str, lang: str):
        return await self._call("score_many", question, thinkings, answer, lang)

    async def check_many(self, items: list[tuple[str, str, str]]):
        return await self._call("check_many", items)

    async def _call(self, method: str, *args):
        transient = 0
        while True:
            client = self.client
            try:
                return await getattr(client, method)(*args)
            except ScorerUnavailable as exc:
                if await self._restart(client, exc):
                    continue
                transient += 1  # alive, but the connection dropped
                if transient > TRANSIENT_RETRIES:
                    raise
                await asyncio.sleep(TRANSIENT_WAIT_S * transient)

    async def _restart(self, failed: ScorerClient, exc: ScorerUnavailable) -> bool:
        """Restart the scorer if its process died; False if it is still running."""
        async with self._lock:
            if self.client is not failed:
                return True  # another request already restarted it
            if not await self.service.wait_exit(2.0):
                return False
            self.restarts += 1
            if self.restarts > self.max_restarts:
                raise ScorerUnavailable(f"the scorer process died {self.restarts} times; stopping. Last: {exc}"
                                        f"{self.service.tail()}") from exc
            self.log(f"the scorer process died ({exc}); restarting it ({self.restarts}/{self.max_restarts})")
            self._old.append(failed)
            await self.service.stop()
            self.client = ScorerClient(await self.service.start())
            return True

    async def aclose(self) -> None:
        for client in [*self._old, self.client]:
            if client is not None:
                await client.aclose()
        await self.service.stop()
