"""Spend limits of one endpoint: requests per second (``--rps``) and tokens per minute (``--tpm``).

The token limit counts what the server says each request cost (``usage``: prompt + completion
tokens) over the last minute, as API providers meter it; a request waits before it is sent
while the last minute's tokens are at the limit. Requests already in flight are not known yet,
so a minute may pass the limit by what they cost: ``--concurrency`` bounds that.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from typing import Awaitable, Callable

from asyncio_throttle import Throttler

WINDOW_S = 60.0  # tokens per minute: a sliding minute


class TokenBudget:
    """Tokens spent over a sliding minute, and how long a request must wait for them to fall
    under ``per_minute``. Pure but for the clock and the sleep it is given."""

    def __init__(self, per_minute: int, clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], Awaitable[None]] = asyncio.sleep):
        self.per_minute, self.clock, self.sleep = per_minute, clock, sleep
        self._spent: deque[tuple[float, int]] = deque()  # (when, tokens), oldest first
        self._total = 0

    def spend(self, tokens: int) -> None:
        if tokens > 0:
            self._spent.append((self.clock(), tokens))
            self._total += tokens

    def used(self) -> int:
        """Tokens spent in the last minute."""
        now = self.clock()
        while self._spent and self._spent[0][0] <= now - WINDOW_S:
            self._total -= self._spent.popleft()[1]
        return self._total

    def wait_s(self) -> float:
        """0 while the last minute is under the limit, else until enough of it has aged out."""
        over = self.used() - self.per_minute
        if over < 0:
            return 0.0
        freed = 0
        for when, tokens in self._spent:
            freed += tokens
            if freed > over:
                return max(0.0, when + WINDOW_S - self.clock())
        return 0.0

    async def __aenter__(self) -> None:
        while (wait := self.wait_s()) > 0:
            await self.sleep(wait)

    async def __aexit__(self, *exc) -> None:
        return None


class Limits:
    """``async with limits:`` waits for both the request rate and the token budget."""

    def __init__(self, rps: float | None, tpm: int | None):
        self.rate = Throttler(rate_limit=rps, period=1.0) if rps else None
        self.budget = TokenBudget(tpm) if tpm else None

    async def __aenter__(self) -> None:
        if self.budget is not None:
            await self.budget.__aenter__()
        if self.rate is not None:
            async with self.rate:
                pass

    async def __aexit__(self, *exc) -> None:
        return None
