"""Which endpoint a request goes to, and what happens when it fails.

A run has one or more generator endpoints (``--endpoint`` repeated), each a ``Generator`` with
its own preflight, connection pool and circuit breaker. A request goes where it would finish
first (``agents.generation.routing``: each endpoint's moving estimate of its time per request
at its load, per kind of request), among those not down and under their ceiling
(``--endpoint-concurrency``). A request that fails is retried with backoff on whichever
endpoint is best then, so an endpoint that goes down moves its share to the others. Requests
wait only while every endpoint is down, and the run stops only when every one has stayed down
for the breaker's limit.

The run starts with the endpoints whose preflight answers; one that does not goes on with its
preflight in the background (retried with its breaker's backoff) and takes requests once it
passes and agrees with the others on the prefill. Only while none answers does the start wait.
"""

from __future__ import annotations

import asyncio
import random
import time
from typing import Any, Awaitable, Callable, Sequence

from agents.config import Deadlines, RetryPolicy
from agents.errors import ConfigError, EndpointError, FatalEndpointError, HungError, PromptTooLong, RetryableError
from agents.generation.endpoint import EndpointInfo, agree
from agents.generation.fitting import roomier_than
from agents.generation.generator import Generation, Generator
from agents.generation.routing import Estimates, Moving, Option, RequestKind, choose, fleet_finish_s
from agents.generation.translate import translated
from agents.watch.stats import Stats

# Once one endpoint's preflight has passed, how long the start waits for the others to pass or
# fail once; one still silent then (hung) goes on in the background.
JOIN_GRACE_S = 10.0
POLL_S = 0.05


class Router:
    def __init__(self, endpoints: Sequence[Generator], policy: RetryPolicy, stats: Stats, rng: random.Random,
                 log: Callable[[str], None], deadlines: Deadlines = Deadlines()):
        self.endpoints = list(endpoints)
        self.deadlines = deadlines
        self.policy, self.stats, self.rng, self.log = policy, stats, rng, log
        self.estimates = {e: Estimates() for e in self.endpoints}
        self.answered_at = {e: float("-inf") for e in self.endpoints}  # its last answer (monotonic)
        self.tokens: dict[str, Moving] = {}  # output tokens per request, by kind, over the fleet
        self.waiting: set[Generator] = set()  # preflight not passed yet: no requests
        self._joining: set[asyncio.Task] = set()
        self._changed = asyncio.Event()
        for e in self.endpoints:
            e.counts.ceiling = e.cfg.max_in_flight

    @property
    def model(self) -> str:
        """The generator model, as the endpoints name it (their names joined where they differ)."""
        return " | ".join(dict.fromkeys(e.model for e in self.endpoints if e.model))

    @property
    def live(self) -> list[Generator]:
        return [e for e in self.endpoints if e not in self.waiting]

    def budget(self, concurrency: int) -> str:
        """How the run's records in flight are split over the endpoints, in one line."""
        ceilings = [e.cfg.max_in_flight for e in self.endpoints]
        each = ", ".join(f"{e.cfg.endpoint} {f'at most {c}' if c else 'no ceiling'}"
                         for e, c in zip(self.endpoints, ceilings))
        line = (f"the fleet: {concurrency} records in flight over {len(self.endpoints)} endpoint"
                f"{'s' * (len(self.endpoints) > 1)}, each request where it would finish first ({each})")
        if all(ceilings) and sum(ceilings) < concurrency:  # type: ignore[arg-type]
            line += f"; the ceilings add up to {sum(ceilings)} requests: records beyond them wait for a free one"  # type: ignore[arg-type]
        return line

    async def start(self, n: int = 1, stop: Sequence[str] = ()) -> EndpointInfo:
        """Every endpoint's preflight, at once. The run starts once one has passed and each other
        has passed or failed once (or ``JOIN_GRACE_S`` later); those that passed must agree on
        the prefill, which shapes the data. The others go on in the background (``_join``)."""
        self.waiting = set(self.endpoints)
        tasks = {asyncio.create_task(e.start(n, stop, self.send)): e for e in self.endpoints}
        passed: list[Generator] = []
        grace_until: float | None = None
        try:
            while True:
                running = [t for t in tasks if not t.done()]
                if running:
                    await asyncio.wait(running, timeout=POLL_S)
                for t in tasks:
                    if t.done() and isinstance(t.exception(), ConfigError):
                        raise t.exception()  # type: ignore[misc]  # a refusal: the run's options are wrong
                passed = [e for t, e in tasks.items() if t.done() and t.exception() is None]
                running = [t for t in tasks if not t.done()]
                if not running or not passed:
                    if not running:
                        break
                    continue
                grace_until = grace_until or time.monotonic() + JOIN_GRACE_S
                if all(tasks[t].breaker.failures for t in running) or time.monotonic() > grace_until:
                    break
            if not passed:
                raise next(t.exception() for t in tasks if t.exception() is not None)  # type: ignore[misc]
            agree([(e.cfg.endpoint, e.info) for e in passed])
        except BaseException:
            for t in tasks:
                t.cancel()
            raise
        passed.sort(key=self.endpoints.index)
        self.info = passed[0].info
        self.waiting -= set(passed)
        self.stats.endpoint_down = False  # one answered: no request waits
        for t, e in tasks.items():
            if e in self.waiting:
                e.counts.state = "waiting"
                job = asyncio.create_task(self._join(e, t, n, stop))
                self._joining.add(job)
                job.add_done_callback(self._joining.discard)
        return self.info

    async def _join(self, e: Generator, preflight: asyncio.Task, n: int, stop: Sequence[str]) -> None:
        """An endpoint whose preflight had not passed at the start: it takes requests once it
        passes (retried with its breaker's backoff) and agrees with the others on the prefill."""
        while True:
            try:
                info = await preflight
                break
            except ConfigError as exc:
                e.counts.state = "refused"
                self.log(f"the endpoint {e.cfg.endpoint} is left out of this run: {exc}")
                return
            except FatalEndpointError as exc:
                e.counts.state = "down"
                self.log(f"the endpoint {e.cfg.endpoint} is left out of this run: {exc}")
                return
            except EndpointError:  # failed past its retries with the breaker still closed
                await asyncio.sleep(max(e.breaker.wait_s(time.monotonic()), e.breaker.cooldown_s))
                preflight = asyncio.create_task(e.start(n, stop, self.send))
        if info.prefills != self.info.prefills:
            e.counts.state = "refused"
            self.log(f"the endpoint {e.cfg.endpoint} answered its preflight but "
                     f"{'continues' if info.prefills else 'cannot continue'} a prefilled turn, unlike the others: "
                     "it is left out of this run, whose data would otherwise differ with the endpoint")
            return
        self.waiting.discard(e)
        e.counts.state = "up"
        self.log(f"the endpoint {e.cfg.endpoint} answered its preflight ({e.model}; {info.describe()}); "
                 "it takes requests now")
        self._notify()

    async def generate(self, messages, prefill: str, n: int, stop: list[str],
                       kind: RequestKind = "edit") -> list[Generation]:
        async def send(call: Callable[[Generator], Awaitable[Any]], first: Generator, stay: bool = False,
                       tokens: int | None = None) -> Any:
            return await self.send(call, first, stay, kind, tokens)

        return await (await self._choose(kind)).generate(messages, prefill, n, stop, send)

    async def aclose(self) -> None:
        for job in list(self._joining):
            job.cancel()
        for e in self.endpoints:
            await e.aclose()

    async def send(self, call: Callable[[Generator], Awaitable[Any]], first: Generator, stay: bool = False,
                   kind: RequestKind | None = None, tokens: int | None = None) -> Any:
        """``call(endpoint)`` on ``first``, retried with backoff on the best endpoint then
        (``stay``: on ``first`` only, as a preflight must be). While an endpoint's breaker is
        open (it looks down for everyone) failures there do not count against this request's
        retries: it waits, or goes elsewhere. That holds for a request sent while it was down
        whose failure arrives after another request's success has closed the breaker again.
        A request past its deadline (``_deadline_s``) is abandoned and its endpoint taken for
        hung: its breaker opens at once, and the request goes elsewhere."""
        kind = kind or ("probe" if stay else "edit")
        attempt, target, failed, roomier, began = 0, first, None, None, time.monotonic()
        while True:
            target = await self._choose(kind, [target] if stay else roomier, prefer=target, avoid=failed)
            breaker = target.breaker
            down_when_sent = breaker.is_open()
            target.in_flight += 1
            target.counts.in_flight = target.in_flight
            target.counts.sent.append(began)
            load = target.in_flight
            try:
                if target.throttler is not None:
                    async with target.throttler:
                        pass
                self.stats.requests += 1
                target.counts.requests += 1
                t0 = time.monotonic()
                out = await _within(self._deadline_s(target, kind, stay, load, tokens), translated(lambda: call(target)))
            except PromptTooLong:
                roomier = roomier_than(target, self.live)  # an endpoint of a larger context may take it
                if stay or not roomier:
                    raise
                continue
            except RetryableError as exc:
                if self._failed(target, exc, down_when_sent):
                    attempt += 1
                if attempt > self.policy.max_retries:
                    raise EndpointError(f"gave up after {self.policy.max_retries} retries: {exc}", exc.status) from exc
                self.stats.retries += 1
                failed = target
                await asyncio.sleep(self.policy.wait_s(max(attempt, 1), exc.retry_after_s, self.rng.random()))
                continue
            finally:
                target.in_flight -= 1
                target.counts.in_flight = target.in_flight
                target.counts.sent.remove(began)
                self._notify()
            self._observe(target, kind, load, time.monotonic() - t0, out)
            if breaker.down_since is not None:
                self.log(f"the endpoint {target.cfg.endpoint} is back after "
                         f"{breaker.down_for_s(time.monotonic()):.0f} s; requests go on")
            breaker.record_success()
            self.answered_at[target] = time.monotonic()
            self.stats.answered += 1
            target.counts.state = "up"
            self.stats.endpoint_down = False
            return out

    def _failed(self, target: Generator, exc: RetryableError, down_when_sent: bool) -> bool:
        """A failed request's mark on its endpoint's breaker; whether it counts against the
        request's retries (not while the endpoint looked down for everyone)."""
        breaker = target.breaker
        counts = not (down_when_sent or breaker.is_open())
        trips = breaker.trips
        # hung: nothing answered there while this request waited (one request stuck on a server
        # that answers the others is a failure like any other)
        target.counts.moved += isinstance(exc, HungError)
        if isinstance(exc, HungError) and time.monotonic() - self.answered_at[target] > exc.waited_s:
            breaker.trip(time.monotonic())
        else:
            breaker.record_failure(time.monotonic())
        if breaker.trips > trips:
            self._log_down(target, exc)
        target.counts.errors += 1
        self.stats.error(str(exc) if len(self.endpoints) == 1 else f"{target.cfg.endpoint}: {exc}")
        return counts

    def _deadline_s(self, e: Generator, kind: RequestKind, stay: bool, load: int, tokens: int | None) -> float:
        """A probe's (preflight) deadline is short and fixed; a request's follows what ``e`` was
        seen to take for that many output tokens at that load, within --timeout."""
        if stay:
            return min(self.deadlines.probe_s, e.cfg.timeout_s)
        return self.deadlines.after_s(self.estimates[e].expected_s(kind, load, tokens), e.cfg.timeout_s)

    def _observe(self, e: Generator, kind: RequestKind, load: int, latency_s: float, out: Any) -> None:
        """A request's time into its endpoint's estimates (restarted from it where the endpoint
        was down), and its output tokens into the fleet's."""
        if not isinstance(out, list) or not out or not isinstance(out[0], Generation):
            return  # not a generation (the model list)
        counted = [g.completion_tokens for g in out]
        tokens = sum(c for c in counted if c is not None) if None not in counted else None
        if e.breaker.down_since is not None:
            self.estimates[e].restart(kind, load, latency_s, tokens)
        else:
            self.estimates[e].observe(kind, load, latency_s, tokens)
        if tokens and kind != "probe":
            self.tokens.setdefault(kind, Moving()).add(tokens)
        self._show_estimates()

    def _show_estimates(self) -> None:
        live = self.live
        for kind in ("draft", "edit"):
            fleet = fleet_finish_s([self.estimates[e] for e in live], [0] * len(live), kind,  # type: ignore[arg-type]
                                   self._expected_tokens(kind))  # type: ignore[arg-type]
            for e, s in zip(live, fleet):
                if s is not None:
                    e.counts.estimate_s[kind] = s

    def _expected_tokens(self, kind: RequestKind) -> float | None:
        m = self.tokens.get(kind)
        return None if m is None else m.mean

    async def _choose(self, kind: RequestKind = "edit", among: Sequence[Generator] | None = None,
                      prefer: Generator | None = None, avoid: Generator | None = None) -> Generator:
        """Where one more ``kind`` request would finish first among the endpoints whose
        preflight passed (or ``among``), not cooling down and under their ceiling; while all
        are cooling down, wait for the first to be tried again; FatalEndpointError once every
        one has been down for the breaker's limit."""
        while True:
            pool = list(among or self.live)
            now = time.monotonic()
            finish = fleet_finish_s([self.estimates[e] for e in pool], [e.in_flight for e in pool], kind,
                                    self._expected_tokens(kind))
            options = [Option(e.in_flight, f, e.cfg.max_in_flight, _ready(e, now), e is avoid, e is prefer)
                       for e, f in zip(pool, finish)]
            i = choose(options)
            if i is not None:
                return pool[i]
            if any(o.ready for o in options):
                await self._wait(None)  # every endpoint up is at its ceiling
                continue
            if all(e.breaker.gave_up(now) for e in pool):
                which = "the endpoint" if len(pool) == 1 else f"all {len(pool)} endpoints"
                raise FatalEndpointError(
                    f"{which} {', '.join(e.cfg.endpoint for e in pool)} "
                    f"{'has' if len(pool) == 1 else 'have'} failed every request for "
                    f"{min(e.breaker.down_for_s(now) for e in pool):.0f} s; stopping (run again to resume)")
            if among is None or not self.live:  # a request waits, not only a late endpoint's preflight
                self.stats.endpoint_down = True
            cooling = [w for e in pool if (w := e.breaker.wait_s(now)) > 0]
            await self._wait(min(cooling) if cooling else None)  # else an endpoint's probe is out: its end

    def _notify(self) -> None:
        """Something a waiting request may care about changed: a request ended, an endpoint joined."""
        self._changed.set()
        self._changed = asyncio.Event()

    async def _wait(self, timeout_s: float | None) -> None:
        try:
            await asyncio.wait_for(self._changed.wait(), timeout_s)
        except asyncio.TimeoutError:
            pass

    def _log_down(self, e: Generator, exc: EndpointError) -> None:
        """A new cooldown of an endpoint's breaker: it went down, or is still down."""
        now, b = time.monotonic(), e.breaker
        hung = isinstance(exc, HungError)
        e.counts.state = "hung" if hung else "down"
        others = sum(1 for o in self.live if o is not e and not o.breaker.is_open())
        where = (f"its requests go to the {others} other endpoints meanwhile" if others else
                 "every request waits")
        if hung:
            self.log(f"endpoint {e.cfg.endpoint}: no answer for {exc.waited_s:.0f} s, {e.counts.moved} request"  # type: ignore[attr-defined]
                     f"{'s' * (e.counts.moved != 1)} moved; it takes one request at a time until one answers, "
                     f"{where} (tried again in {b.wait_s(now):.0f} s)")
        elif b.trips == 1:
            self.log(f"the endpoint {e.cfg.endpoint} looks down ({b.failures} failures in a row, last: {exc}); "
                     f"{where} {b.wait_s(now):.0f} s, then it is tried again (the run stops if "
                     f"{'it' if len(self.endpoints) == 1 else 'every endpoint'} stays down "
                     f"{b.max_down_s / 60:.0f} min)")
        else:
            self.log(f"the endpoint {e.cfg.endpoint} is still down after {b.down_for_s(now):.0f} s "
                     f"(last: {exc}); tried again in {b.wait_s(now):.0f} s")


def _ready(e: Generator, now: float) -> bool:
    """Whether ``e`` takes a request now: not cooling down, and, while its breaker is open, with
    no request there: the first one after a cooldown is its probe, and a hung endpoint would
    hold every other one sent beside it for a whole deadline."""
    return e.breaker.wait_s(now) == 0 and not (e.breaker.is_open() and e.in_flight > 0)


async def _within(deadline_s: float, request: Awaitable[Any]) -> Any:
    """``request``, abandoned (HungError) once ``deadline_s`` has passed without its answer."""
    try:
        return await asyncio.wait_for(request, deadline_s)
    except asyncio.TimeoutError:
        raise HungError(f"no answer within {deadline_s:.0f} s", deadline_s) from None
