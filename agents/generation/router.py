"""Which endpoint a request goes to, and what happens when it fails.

A run has one or more generator endpoints (``--endpoint`` repeated), each a ``Generator`` with
its own preflight, connection pool and circuit breaker. A request goes to the endpoint with the
fewest requests in flight among those not down. A request that fails is retried with backoff
on whichever endpoint is best then, so an endpoint that goes down moves its share to the
others. Requests wait only while every endpoint is down, and the run stops only when every one
has stayed down for the breaker's limit.
"""

from __future__ import annotations

import asyncio
import random
import time
from typing import Any, Awaitable, Callable, Sequence

from agents.config import RetryPolicy
from agents.errors import ConfigError, EndpointError, FatalEndpointError, RetryableError
from agents.generation.endpoint import EndpointInfo
from agents.generation.generator import Generation, Generator
from agents.generation.translate import translated
from agents.watch.stats import Stats


class Router:
    def __init__(self, endpoints: Sequence[Generator], policy: RetryPolicy, stats: Stats, rng: random.Random,
                 log: Callable[[str], None]):
        self.endpoints = list(endpoints)
        self.policy, self.stats, self.rng, self.log = policy, stats, rng, log

    @property
    def model(self) -> str:
        """The generator model, as the endpoints name it (their names joined where they differ)."""
        return " | ".join(dict.fromkeys(e.model for e in self.endpoints))

    async def start(self, n: int = 1, stop: Sequence[str] = ()) -> EndpointInfo:
        """Every endpoint's preflight, at once; they must agree on the prefill, which shapes the data."""
        infos = await asyncio.gather(*(e.start(n, stop, self.send) for e in self.endpoints))
        if len({i.prefills for i in infos}) > 1:
            can = [e.cfg.endpoint for e, i in zip(self.endpoints, infos) if i.prefills]
            cannot = [e.cfg.endpoint for e, i in zip(self.endpoints, infos) if not i.prefills]
            raise ConfigError(f"the endpoints differ: {', '.join(can)} continue a prefilled turn, {', '.join(cannot)} "
                              "cannot, and the data would differ with the endpoint: give endpoints of one kind, or "
                              "--chat-prefill off for all")
        return infos[0]

    async def generate(self, messages, prefill: str, n: int, stop: list[str]) -> list[Generation]:
        return await (await self._choose()).generate(messages, prefill, n, stop, self.send)

    async def aclose(self) -> None:
        for e in self.endpoints:
            await e.aclose()

    async def send(self, call: Callable[[Generator], Awaitable[Any]], first: Generator, stay: bool = False) -> Any:
        """``call(endpoint)`` on ``first``, retried with backoff on the best endpoint then
        (``stay``: on ``first`` only, as a preflight must be). While an endpoint's breaker is
        open (it looks down for everyone) failures there do not count against this request's
        retries: it waits, or goes elsewhere. That holds for a request sent while it was down
        whose failure arrives after another request's success has closed the breaker again."""
        attempt, target, failed = 0, first, None
        while True:
            target = await self._choose([target] if stay else None, prefer=target, avoid=failed)
            breaker = target.breaker
            down_when_sent = breaker.is_open()
            target.in_flight += 1
            try:
                if target.throttler is not None:
                    async with target.throttler:
                        pass
                self.stats.requests += 1
                target.counts.requests += 1
                out = await translated(lambda: call(target))
            except RetryableError as exc:
                counts = not (down_when_sent or breaker.is_open())
                trips = breaker.trips
                breaker.record_failure(time.monotonic())
                if breaker.trips > trips:
                    self._log_down(target, exc)
                target.counts.errors += 1
                self.stats.error(str(exc) if len(self.endpoints) == 1 else f"{target.cfg.endpoint}: {exc}")
                if counts:
                    attempt += 1
                if attempt > self.policy.max_retries:
                    raise EndpointError(f"gave up after {self.policy.max_retries} retries: {exc}", exc.status) from exc
                self.stats.retries += 1
                failed = target
                await asyncio.sleep(self.policy.wait_s(max(attempt, 1), exc.retry_after_s, self.rng.random()))
                continue
            finally:
                target.in_flight -= 1
            if breaker.down_since is not None:
                self.log(f"the endpoint {target.cfg.endpoint} is back after "
                         f"{breaker.down_for_s(time.monotonic()):.0f} s; requests go on")
            breaker.record_success()
            target.counts.state = "up"
            self.stats.endpoint_down = False
            return out

    async def _choose(self, among: Sequence[Generator] | None = None, prefer: Generator | None = None,
                      avoid: Generator | None = None) -> Generator:
        """The endpoint with the fewest in flight among those not cooling down (on a tie, not
        ``avoid``, where the request just failed, then ``prefer``); while all are cooling down,
        wait for the first to be tried again; FatalEndpointError once every one has been down
        for the breaker's limit."""
        among = among or self.endpoints
        while True:
            now = time.monotonic()
            ready = [e for e in among if e.breaker.wait_s(now) == 0]
            if ready:
                return min(ready, key=lambda e: (e.in_flight, e is avoid, e is not prefer))
            if all(e.breaker.gave_up(now) for e in among):
                which = "the endpoint" if len(among) == 1 else f"all {len(among)} endpoints"
                raise FatalEndpointError(
                    f"{which} {', '.join(e.cfg.endpoint for e in among)} "
                    f"{'has' if len(among) == 1 else 'have'} failed every request for "
                    f"{min(e.breaker.down_for_s(now) for e in among):.0f} s; stopping (run again to resume)")
            self.stats.endpoint_down = True
            await asyncio.sleep(min(e.breaker.wait_s(now) for e in among))

    def _log_down(self, e: Generator, exc: EndpointError) -> None:
        """A new cooldown of an endpoint's breaker: it went down, or is still down."""
        now, b = time.monotonic(), e.breaker
        e.counts.state = "down"
        others = sum(1 for o in self.endpoints if o is not e and not o.breaker.is_open())
        where = (f"its requests go to the {others} other endpoints meanwhile" if others else
                 "every request waits")
        if b.trips == 1:
            self.log(f"the endpoint {e.cfg.endpoint} looks down ({b.failures} failures in a row, last: {exc}); "
                     f"{where} {b.wait_s(now):.0f} s, then it is tried again (the run stops if "
                     f"{'it' if len(self.endpoints) == 1 else 'every endpoint'} stays down "
                     f"{b.max_down_s / 60:.0f} min)")
        else:
            self.log(f"the endpoint {e.cfg.endpoint} is still down after {b.down_for_s(now):.0f} s "
                     f"(last: {exc}); tried again in {b.wait_s(now):.0f} s")
