"""A worker's claim loop: claim records as it has room, search up to ``concurrency`` at once,
renew its lease meanwhile, until no record of the run is left unfinished.

While other workers hold the last records the loop waits rather than ends: one of them that
dies has its records taken over here once its lease runs out. An error no record survives
stops every record in flight (``Shutdown.stop_now``) and leaves the loop. A store that went away
is ridden out (``agents.search.outage``): nothing new is claimed until it answers again, and if
it does not within ``--store-wait`` the records in flight get the grace period to finish, their
generations held, before the loop stops.
"""

from __future__ import annotations

import asyncio
from typing import Callable

from agents.search.outage import StoreOutage
from agents.search.record import RecordSearch
from agents.search.shutdown import Shutdown
from agents.watch.stats import Stats
from store import Store

HEARTBEATS_PER_LEASE = 4
LAG_PROBE_S = 0.1  # how often the event loop's lateness is measured
MAX_POLL_S = 5.0  # how often an idle worker asks the store whether work appeared


class ClaimLoop:
    def __init__(self, searcher: RecordSearch, store: Store, run_id: int, concurrency: int, lease_s: float,
                 shutdown: Shutdown, log: Callable[[str], None], stats: Stats, outage: StoreOutage):
        self.searcher, self.store, self.run_id = searcher, store, run_id
        self.concurrency, self.lease_s = concurrency, lease_s
        self.shutdown, self.log, self.stats, self.outage = shutdown, log, stats, outage
        self.running: dict[asyncio.Task, int] = {}  # each search, by the record it searches
        self._waiting_said = False
        self._failed: BaseException | None = None  # the store gave out: raised once the searches drained

    async def run(self) -> None:
        self.stats.phase = "searching"
        self.shutdown.tasks = self.running
        heart = asyncio.create_task(self._heartbeat())
        probe = asyncio.create_task(self._probe_lag())
        poll_s = min(MAX_POLL_S, self.lease_s / HEARTBEATS_PER_LEASE)
        try:
            while True:
                claims = await self._claim_more()
                if not self.running:
                    if self._failed is not None:
                        raise self._failed
                    if self.shutdown.requested or not await self._others_unfinished(claims):
                        return
                    if not claims and not heart.done():
                        await asyncio.wait([heart], timeout=poll_s)
                else:
                    beating = [] if heart.done() else [heart]
                    await asyncio.wait([*self.running, *beating], timeout=poll_s, return_when=asyncio.FIRST_COMPLETED)
                if heart.done() and not heart.cancelled() and heart.exception() is not None:
                    self._stop_for(heart.exception())  # the store is gone
                self._reap()
        finally:
            heart.cancel()
            probe.cancel()
            self.log(f"event loop lag: max {self.stats.loop_lag_max_s * 1000:.0f} ms")
            for t in self.running:
                t.cancel()
            if self.running:
                await asyncio.wait(self.running)  # cancelled records write nothing more

    async def _claim_more(self) -> list:
        """Claim as many records as there is room for and start their searches; none while the
        store is down (a claim is what finds it back)."""
        free = 0 if self.shutdown.requested else self.concurrency - len(self.running)
        if free <= 0:
            return []
        mine = list(self.running.values())  # read here, not in the claim's thread
        claims = await self.outage.attempt(lambda: self.store.claim(self.run_id, free, mine), [], in_thread=True)
        for c in claims:
            if c.taken_from:
                self.log(f"record {c.record.key}: taken over from {c.taken_from}, whose lease ran out")
        if claims:
            self.stats.phase = "searching"
            for rec in await self.searcher.precheck([c.record for c in claims]):
                self.running[asyncio.create_task(self._one(rec))] = rec.id
        return claims

    def _stop_for(self, exc: BaseException) -> None:
        """An error no record survives: raised now, or, where the wait for the store ran out,
        once the searches in flight have finished or been given up, holding what they generate."""
        if not self.outage.gave_up:
            raise exc
        if self._failed is None:
            self._failed = exc
            self.shutdown.wind_down("The store did not come back within --store-wait: what is generated "
                                    "meanwhile is kept in a spill file.")

    async def _others_unfinished(self, claims: list) -> bool:
        """Nothing runs here: whether the run still has unfinished records (held by other
        workers), said once."""
        waiting = await self.outage.call(lambda again: self.store.waiting(self.run_id), in_thread=True)
        if waiting.unfinished == 0:
            return False
        if not claims and not self._waiting_said and waiting.held_elsewhere:
            self.log(f"waiting: other workers hold the last {waiting.held_elsewhere} records; any of them "
                     "that stops answering has its records taken over here after --lease-s")
            self._waiting_said, self.stats.phase = True, "waiting for other workers"
        return True

    def _reap(self) -> None:
        """Forget the finished searches; one that raised stops the run."""
        for task in [t for t in self.running if t.done()]:
            del self.running[task]
            if not task.cancelled() and task.exception() is not None:
                self._stop_for(task.exception())

    async def _one(self, rec) -> None:
        self.stats.running += 1
        try:
            await self.searcher.run(rec)
        except Exception:
            if not self.outage.gave_up:
                self.shutdown.stop_now()  # what stops this record stops the run: nothing more in flight
            raise
        finally:
            self.stats.running -= 1

    async def _probe_lag(self) -> None:
        """How late a short sleep wakes: the longest the loop was held by one callback (a store
        write, parsing a long output), which delays every request and heartbeat meanwhile."""
        loop = asyncio.get_running_loop()
        while True:
            t0 = loop.time()
            await asyncio.sleep(LAG_PROBE_S)
            self.stats.loop_lag_max_s = max(self.stats.loop_lag_max_s, loop.time() - t0 - LAG_PROBE_S)

    async def _heartbeat(self) -> None:
        while True:
            await asyncio.sleep(self.lease_s / HEARTBEATS_PER_LEASE)
            await self.outage.call(lambda again: self.store.heartbeat(), in_thread=True)
