"""Several scorers for one run, and the check that a scorer is the one the run is configured for.

``--scorer-device cuda:0,cuda:1`` starts one scorer process per device; ``--scorer-url``,
repeated, names scorers already running (``reer scorer`` on other machines). A record's requests
always go to the same scorer, so its prefix KV cache keeps hitting: rendezvous hashing on the
record's question and answer picks, among the scorers up, the one with the highest hash of
(record, scorer). A scorer that stops answering is set aside for ``DOWN_S`` and its records go
each to its next-highest, while every other record stays where it was; one that did not answer
at the start joins when it does, taking back the records that prefer it.

A scorer that accepts a request and never answers (hung) is found by the request's deadline: a
multiple of a high percentile of that scorer's recent latencies for that kind of request (with
a floor, ``agents.config.Deadlines``); before any latency is known, once the scorer has
answered nothing for the floor since the request was sent (a scorer working through a queue
answers something meanwhile). The request is abandoned and goes to the next scorer,
and the hung one is set aside like a dead one; after ``DOWN_S`` it takes one request at a time
until one is answered, so a scorer still hung holds one request, not all of its records'.
``sent`` and ``answers`` are what the run's watchdog reads, ``states`` what the dashboard shows.
"""

from __future__ import annotations

import asyncio
import hashlib
import math
import time
from collections import deque
from typing import Any, Awaitable, Callable, Protocol

from agents.config import Deadlines
from prompts import SCORING_PROMPTS, PromptSet
from scorer import ScorerUnavailable
from scorer.errors import ScoringInputError
from scorer.protocol import Health
from scorer.settings import ScorerSettings

DOWN_S = 30.0  # a scorer that stopped answering is tried again after this
LOAD_WAIT_S = 1800.0  # a remote scorer still loading its model: how long to wait for it
CONNECT_WAIT_S = 120.0  # one not listening yet (started at the same time as the run): how long to wait
ALL_DOWN_WAIT_S = 120.0  # every scorer down mid-run (restarting, reloading): how long the records wait
ALL_DOWN_RETRY_S = 1.0  # meanwhile, how often each waiting request tries them again
LATENCY_WINDOW = 200  # recent latencies kept per scorer and kind of request
LATENCY_PERCENTILE = 0.95


class Scorer(Protocol):
    async def score_many(self, question: str, thinkings: list[str], answer: str,
                         lang: str) -> list[float | ScoringInputError]: ...

    async def check_many(self, items: list[tuple[str, str, str]]) -> list[int | ScoringInputError]: ...

    async def aclose(self) -> None: ...


def rank(key: str, names: list[str]) -> list[int]:
    """The scorers' indexes in the order ``key`` prefers them (rendezvous hashing)."""
    def weight(i: int) -> bytes:
        return hashlib.blake2b(f"{key}\x00{names[i]}".encode(), digest_size=8).digest()
    return sorted(range(len(names)), key=weight, reverse=True)


class ScorerPool:
    """The scorers of a run; ``pending`` names ones not answering yet, which take records once
    ``add`` brings them in. With every scorer down the pool waits up to ``wait_s`` for one to
    answer again (a restarted scorer reloads its model), saying so, before it gives up."""

    def __init__(self, members: list[tuple[str, Scorer]], log: Callable[[str], None], pending: tuple[str, ...] = (),
                 wait_s: float = ALL_DOWN_WAIT_S, deadlines: Deadlines = Deadlines()):
        self.names = [name for name, _ in members] + list(pending)
        self.scorers: dict[str, Scorer] = dict(members)
        self.log, self.wait_s, self.deadlines = log, wait_s, deadlines
        self._down_until = dict.fromkeys(self.names, 0.0)
        self._all_down_since: float | None = None
        self._seen: dict[tuple[str, str], deque[float]] = {}  # (scorer, method) -> recent latencies (s)
        # when each request now at a scorer was first sent; and each one no scorer takes now (all set aside)
        self.sent: dict[str, list[float]] = {name: [] for name in self.names}
        self.queued: list[float] = []
        self._answered_at = dict.fromkeys(self.names, -math.inf)  # each scorer's last answer (monotonic)
        self.answers = 0  # requests answered, by any scorer
        self._hung: dict[str, float] = {}  # scorer -> when its first request was abandoned
        self.moved = dict.fromkeys(self.names, 0)  # requests abandoned there and sent to another

    def add(self, name: str, scorer: Scorer) -> None:
        """A pending scorer now answers: the records that prefer it go to it from now on."""
        self.scorers[name] = scorer
        self._down_until[name] = 0.0
        self.sent.setdefault(name, [])
        self._answered_at.setdefault(name, -math.inf)
        self.moved.setdefault(name, 0)

    async def score_many(self, question: str, thinkings: list[str], answer: str, lang: str):
        return await self._call(f"{question}\x00{answer}", "score_many", question, thinkings, answer, lang)

    async def check_many(self, items: list[tuple[str, str, str]]):
        return await self._call(f"{items[0][0]}\x00{items[0][1]}" if items else "", "check_many", items)

    async def _call(self, key: str, method: str, *args):
        began = time.monotonic()
        while True:
            # every scorer down: try them all again rather than wait out DOWN_S
            ignore_down = self._all_down_since is not None
            for i in rank(key, self.names):
                name = self.names[i]
                scorer = self.scorers.get(name)
                if scorer is None or (self._down_until[name] > time.monotonic() and not ignore_down):
                    continue
                if name in self._hung and self.sent[name]:
                    continue  # its probe is out: one request at a time until one is answered
                t0 = time.monotonic()
                self.sent[name].append(began)
                try:
                    result = await self._answer(name, getattr(scorer, method)(*args), self._deadline_s(name, method), t0)
                except ScorerUnavailable as exc:
                    self._set_down(name, exc)
                    continue
                except asyncio.TimeoutError:
                    self._set_hung(name, time.monotonic() - t0)
                    continue
                finally:
                    self.sent[name].remove(began)
                self._seen.setdefault((name, method), deque(maxlen=LATENCY_WINDOW)).append(time.monotonic() - t0)
                self._answered(name)
                return result
            self.queued.append(began)
            try:
                await self._wait_for_one()
            finally:
                self.queued.remove(began)

    def _set_down(self, name: str, exc: ScorerUnavailable) -> None:
        if self._down_until[name] <= time.monotonic() and self._all_down_since is None:
            self.log(f"the scorer {name} stopped answering ({exc}); its records go to the other scorers, and it "
                     f"is tried again in {DOWN_S:.0f} s")
        self._down_until[name] = time.monotonic() + DOWN_S

    async def _answer(self, name: str, request: Awaitable[Any], deadline_s: float | None, sent: float) -> Any:
        """``request``'s answer, or asyncio.TimeoutError past ``deadline_s``; with none (no latency
        known yet), once ``name`` has answered nothing for the floor since ``sent``."""
        if deadline_s is not None:
            return await asyncio.wait_for(request, deadline_s)
        task = asyncio.ensure_future(request)
        try:
            while True:
                silent_s = time.monotonic() - max(sent, self._answered_at[name])
                if silent_s >= self.deadlines.floor_s:
                    raise asyncio.TimeoutError
                done, _ = await asyncio.wait({task}, timeout=self.deadlines.floor_s - silent_s)
                if done:
                    return task.result()
        finally:
            task.cancel()  # abandoned (or this search cancelled): the request goes with it

    def states(self) -> dict[str, str]:
        """Each scorer's state, as the dashboard shows it: up, hung (with its moved requests),
        down, or waiting (not answered yet)."""
        now = time.monotonic()
        def state(name: str) -> str:
            if name not in self.scorers:
                return "waiting"
            if name in self._hung:
                return f"hung, {self.moved[name]} moved"
            return "down" if self._down_until[name] > now else "up"
        return {name: state(name) for name in self.names}

    def _deadline_s(self, name: str, method: str) -> float | None:
        """How long a ``method`` request to ``name`` may go unanswered: from its own recent
        latencies for that method, else the other scorers', else any request's (the floor keeps
        a few fast answers from making a short deadline); None before any answer (``_answer``
        then goes by the scorer's silence)."""
        seen = list(self._seen.get((name, method), ()))
        seen = seen or [t for (_, m), ts in self._seen.items() if m == method for t in ts]
        seen = seen or [t for ts in self._seen.values() for t in ts]
        if not seen:
            return None
        return self.deadlines.after_s(percentile(seen, LATENCY_PERCENTILE), math.inf)

    def _set_hung(self, name: str, waited_s: float) -> None:
        """A request to ``name`` went past its deadline: it goes to the next scorer, and ``name``
        takes no new work until a request is answered there."""
        self.moved[name] += 1
        now = time.monotonic()
        if self._down_until[name] <= now:  # newly hung, or its probe failed: say so once
            others = any(n != name and n in self.scorers and self._down_until[n] <= now for n in self.names)
            self.log(f"scorer {name}: no answer for {waited_s:.0f} s, {self.moved[name]} request"
                     f"{'s' * (self.moved[name] != 1)} moved; its records go to the other scorers"
                     f"{'' if others else ' once one answers'}, and it takes one request at a time again in "
                     f"{DOWN_S:.0f} s")
        self._hung.setdefault(name, now)
        self._down_until[name] = now + DOWN_S

    def _answered(self, name: str) -> None:
        self._answered_at[name] = time.monotonic()
        self.answers += 1
        if name in self._hung:
            self.log(f"the scorer {name} answers again after {time.monotonic() - self._hung.pop(name):.0f} s "
                     "without an answer; its records come back to it")
        if self._all_down_since is not None:
            self.log(f"the scorer {name} answers again after {time.monotonic() - self._all_down_since:.0f} s")
            self._all_down_since = None
        self._down_until[name] = 0.0

    async def _wait_for_one(self) -> None:
        now = time.monotonic()
        if self._all_down_since is None:
            self._all_down_since = now
            self.log(f"SCORERS DOWN: no scorer answers ({', '.join(self.names)}); waiting up to {self.wait_s:.0f} s "
                     "for one to come back")
        elif now - self._all_down_since > self.wait_s:
            raise ScorerUnavailable(f"no scorer ({', '.join(self.names)}) has answered for {self.wait_s:.0f} s; "
                                    "stopping (run again to resume)")
        await asyncio.sleep(ALL_DOWN_RETRY_S)

    async def aclose(self) -> None:
        for scorer in self.scorers.values():
            await scorer.aclose()


class Counted:
    """One scorer as it is (no deadlines, no moves: its supervisor restarts it), with the
    bookkeeping the pool keeps, so that the run's watchdog can name it."""

    def __init__(self, name: str, scorer: Scorer):
        self.name, self.scorer = name, scorer
        self.sent: dict[str, list[float]] = {name: []}
        self.queued: list[float] = []  # never: it has no other scorer to wait for
        self.answers = 0

    async def score_many(self, question: str, thinkings: list[str], answer: str, lang: str):
        return await self._call("score_many", question, thinkings, answer, lang)

    async def check_many(self, items: list[tuple[str, str, str]]):
        return await self._call("check_many", items)

    async def _call(self, method: str, *args):
        began = time.monotonic()
        self.sent[self.name].append(began)
        try:
            result = await getattr(self.scorer, method)(*args)
        finally:
            self.sent[self.name].remove(began)
        self.answers += 1
        return result

    def states(self) -> dict[str, str]:
        return {}  # one scorer: the run's lines say it all

    async def aclose(self) -> None:
        await self.scorer.aclose()


def percentile(values: list[float], q: float) -> float:
    """The ``q`` quantile of ``values`` (nearest rank)."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def identity_problems(health: Health, settings: ScorerSettings) -> list[str]:
    """How the scorer behind ``health`` differs from the one the run is configured for: its
    model, dtype (unless the run says auto), scoring prompt (by name and by text) and
    single-segment rule. Empty: it scores as the run would."""
    said = health.model_extra or {}
    expected = {"model": settings.model, "scoring_prompt": settings.scoring_prompt,
                "single_segment_answer": settings.single_segment_answer,
                "scoring_prompt_id": PromptSet(settings.prompts_dir).identity(SCORING_PROMPTS[settings.scoring_prompt])}
    if settings.dtype != "auto":
        expected["dtype"] = settings.dtype
    flags = {"model": "--scorer-model", "scoring_prompt": "--scoring-prompt", "dtype": "--scorer-dtype",
             "single_segment_answer": "--single-segment-answer", "scoring_prompt_id": "--prompts-dir"}
    problems = []
    for key, want in expected.items():
        got = health.model if key == "model" else said.get(key)
        if got is not None and got != want:
            problems.append(f"its {key.replace('_', ' ')} is {got!r}, this run's {flags[key]} gives {want!r}")
    return problems


async def ready_health(client, log: Callable[[str], None], wait_s: float = LOAD_WAIT_S,
                       connect_wait_s: float = CONNECT_WAIT_S) -> Health:
    """The health of a remote scorer once it has loaded its model: it may still be loading, or
    (started with the run) not yet listening."""
    start, waiting = time.monotonic(), None
    while True:
        try:
            health = await client.health()
        except ScorerUnavailable as exc:
            if time.monotonic() - start > connect_wait_s:
                raise
            why = "answer" + (" (it accepts connections but gives no answer: hung?)" if "gave no answer" in str(exc) else "")
        else:
            if health.status == "ok":
                return health
            if health.status == "error":
                raise ScorerUnavailable(f"the scorer at {client.url} failed to load its model: {health.error}")
            if time.monotonic() - start > wait_s:
                raise ScorerUnavailable(f"the scorer at {client.url} is still loading after {wait_s:.0f} s")
            why = f"load {health.model}"
        if why != waiting:
            log(f"waiting for the scorer at {client.url} to {why}")
            waiting = why
        await asyncio.sleep(2.0)
