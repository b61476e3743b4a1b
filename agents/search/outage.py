"""Riding out a store that went away: a server restart, a failover, a network hiccup.

Every store call of the search goes through :class:`StoreOutage`, each try in a thread
(:func:`off_loop`) so that a slow write holds no request or heartbeat. A failure the store calls
transient (``store.outage``) is retried with backoff and jitter for up to ``--store-wait``;
meanwhile the claim loop claims nothing new, the requests in flight finish, and what they
generated waits here, in memory, in the call that writes it: at most one request's outputs per
record in flight, so bounded by the concurrency. Once the store answers again each held write
goes through its usual fence, so generations for a record another worker took over meanwhile
are dropped (counted as wasted) instead of written over it.

When the wait runs out, or the run is stopped during it, the wait is given up: every caller
raises the store's error, and the generations still held are the caller's to spill
(``agents.search.spill``). A failure that is not transient, or any with ``--store-wait 0``,
stops at once as before.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import random
import time
from typing import Any, Callable, Sequence, TypeVar

from agents.config import RetryPolicy
from agents.watch.stats import Stats
from store import LeaseLost, Node, StoreError, StoreUnavailable

T = TypeVar("T")

# Short and capped: a store that comes back is noticed within seconds, and a worker retries at
# most a few times a second however many records wait.
STORE_RETRY = RetryPolicy(base_s=0.5, max_s=5.0)
MIN_PAUSE_S = 0.1


async def off_loop(fn: Callable[..., T], *args: Any) -> T:
    """A store call in a thread: a write of a 30,000-character draft (or a wait on a lock) would
    hold the event loop, and every request and heartbeat with it. A record cancelled meanwhile
    waits for its write to end, so nothing is written after the record has stopped."""
    call = asyncio.ensure_future(asyncio.to_thread(fn, *args))
    # retrieved whatever happens: what the write of a record cancelled (even twice) raised is moot
    call.add_done_callback(lambda f: f.cancelled() or f.exception())
    try:
        return await asyncio.shield(call)
    except asyncio.CancelledError:
        await asyncio.wait([call])
        raise


class StoreOutage:
    """The store's state as this worker sees it, and the generations held while it is down."""

    def __init__(self, wait_s: float, stats: Stats, log: Callable[[str, str], None], rng: random.Random,
                 stopping: Callable[[], bool], policy: RetryPolicy = STORE_RETRY,
                 clock: Callable[[], float] = time.monotonic):
        self.wait_s, self.stats, self.log, self.rng = wait_s, stats, log, rng
        self.stopping, self.policy, self.clock = stopping, policy, clock
        self.down_since: float | None = None
        # Called as the store answers again: the heartbeat, so that this worker's lease, which
        # may have run out meanwhile, is its own again before another worker takes its records.
        self.on_back: Callable[[], None] | None = None
        self.gave_up = False
        self.held: dict[int, list[Node]] = {}  # by call: the generations its write carries
        self._calls = itertools.count()
        stats.store_wait_s = wait_s

    @property
    def down(self) -> bool:
        return self.down_since is not None

    def held_nodes(self) -> list[Node]:
        return [n for nodes in self.held.values() for n in nodes]

    async def call(self, write: Callable[[bool], T], held: Sequence[Node] = (), in_thread: bool = False) -> T:
        """``write(again)``, retried while the store is down; ``again`` is true on a retry, when
        a first try may have committed unseen. ``held``: the generations the write stores, kept
        here until it lands. ``in_thread``: run it off the event loop (:func:`off_loop`), as every
        store call of a run is."""
        call = next(self._calls)
        if held:
            self.held[call] = list(held)
        landed: list[bool] = []  # set in the thread: a caller cancelled meanwhile still sees it

        def once(again: bool) -> T:
            result = write(again)
            landed.append(True)
            return result

        attempt = 0
        while True:
            try:
                result = await off_loop(once, attempt > 0) if in_thread else once(attempt > 0)
            except asyncio.CancelledError:
                if landed:  # the write went through: nothing is left to hold (or spill)
                    self.held.pop(call, None)
                raise
            except LeaseLost:
                if attempt and held:  # generated while the store was down, for a record now another's
                    self.stats.wasted += len(held)
                self.held.pop(call, None)
                raise
            except StoreUnavailable as exc:
                if not exc.transient or self.wait_s <= 0:
                    raise
                self._went_down(exc)
                if self.gave_up or self.stopping() or self.clock() - self.down_since >= self.wait_s:
                    self.gave_up = True
                    raise
                attempt += 1
                await asyncio.sleep(self._pause(attempt))
                continue
            except Exception:
                self.held.pop(call, None)  # not the store's absence: nothing to hold it for
                raise
            self.held.pop(call, None)
            self._came_back()
            return result

    async def attempt(self, write: Callable[[], T], default: T, in_thread: bool = False) -> T:
        """``write()`` once: ``default`` if the store is down (the claim loop claims nothing
        then, rather than wait), the store's error if it will not be back. ``in_thread``: as
        for :meth:`call`."""
        try:
            result = await off_loop(write) if in_thread else write()
        except StoreUnavailable as exc:
            if not exc.transient or self.wait_s <= 0:
                raise
            self._went_down(exc)
            if self.stopping() or self.clock() - self.down_since >= self.wait_s:
                self.gave_up = True
                raise
            return default
        self._came_back()
        return result

    def _pause(self, attempt: int) -> float:
        left = self.wait_s - (self.clock() - self.down_since)
        return max(MIN_PAUSE_S, min(self.policy.wait_s(attempt, None, self.rng.random()), left))

    def _went_down(self, exc: StoreUnavailable) -> None:
        if self.down_since is None:
            self.down_since = self.stats.store_down_since = self.clock()
            self.log(f"STORE DOWN, retrying (0 s of {self.wait_s:.0f}): {exc.cause}; no new records are claimed "
                     "meanwhile and what is generated is held until it is back", "WARN")

    def _came_back(self) -> None:
        if self.down_since is not None and not self.gave_up:
            self.log(f"store back after {self.clock() - self.down_since:.0f} s", "INFO")
            self.down_since = self.stats.store_down_since = None
            if self.on_back is not None:
                with contextlib.suppress(StoreError):  # down again: the next call finds it so
                    self.on_back()
