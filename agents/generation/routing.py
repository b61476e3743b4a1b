"""Where a request would finish first: the router's decision, pure (no I/O, no clock).

Each endpoint keeps a moving estimate of how long one more request would take there, given the
requests it has in flight (``LoadFit``), per kind of request: drafts and edits differ by far,
and where the server reports usage the estimate is per output token, so that an endpoint that
happened to get the long requests does not look slow. ``choose`` sends a request where it would
finish first, among the endpoints that are up and under their ceiling.

Why a fitted line rather than ``(in flight + 1) x latency``: a server that queues (one slot)
takes ``k x s`` for a request with ``k`` in flight, a server that batches (vLLM) takes about
the same at any load until its GPU is full. Fitting ``time = base + per_request x k`` over the
loads seen tells the two apart, so a fast batching server is not taken for a full one and a
ten times slower endpoint takes work only when it would really finish sooner.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, Sequence

RequestKind = Literal["draft", "edit", "probe"]

DEFAULT_HALF_LIFE = 20  # requests: a server that slows down is seen within a few dozen of its requests
# Each request in flight is taken to add at least this share of the base time to the next one:
# ties go to the less loaded endpoint, and one whose time has never been seen to grow with its
# load (or was just probed) is not sent every request at once.
MIN_LOAD_COST = 0.05
MIN_LOAD_SPREAD = 1.0  # variance of the loads seen (requests squared) needed to fit a slope


@dataclass
class LoadFit:
    """A time (per request, or per output token) against the requests in flight when it was
    sent, fitted as ``base + per_request x in_flight`` by exponentially weighted least squares."""

    half_life: float = DEFAULT_HALF_LIFE
    w: float = 0.0
    sk: float = 0.0
    skk: float = 0.0
    sy: float = 0.0
    sky: float = 0.0

    def add(self, in_flight: int, y: float) -> None:
        d = 0.5 ** (1.0 / self.half_life)
        self.w, self.sk, self.skk = self.w * d + 1, self.sk * d + in_flight, self.skk * d + in_flight * in_flight
        self.sy, self.sky = self.sy * d + y, self.sky * d + in_flight * y

    def line(self) -> tuple[float, float] | None:
        """``(base, per_request)``; None before any observation."""
        if self.w == 0:
            return None
        mk, my = self.sk / self.w, self.sy / self.w
        spread = self.skk / self.w - mk * mk
        # All seen at one load: base and load cannot be told apart; take the queue's view.
        slope = (self.sky / self.w - mk * my) / spread if spread >= MIN_LOAD_SPREAD else my / max(mk, 1.0)
        slope = max(slope, 0.0)
        base = my - slope * mk
        if base < 0:
            base, slope = 0.0, my / max(mk, 1.0)
        return base, max(slope, MIN_LOAD_COST * base)

    def at(self, in_flight: int) -> float | None:
        """The expected time of a request sent with ``in_flight`` requests there (itself included)."""
        fit = self.line()
        return None if fit is None else fit[0] + fit[1] * in_flight


@dataclass
class Estimates:
    """One endpoint's moving estimates, per kind of request, and of its preflight's request
    (``probe``, per request), which stands in for a kind not seen there yet (``fleet_finish_s``)."""

    fits: dict[tuple[str, bool], LoadFit] = field(default_factory=dict)  # (kind, per token) -> fit

    def observe(self, kind: RequestKind, in_flight: int, latency_s: float, tokens: int | None) -> None:
        per_token = bool(tokens) and kind != "probe"
        y = latency_s / tokens if per_token and tokens else latency_s
        self.fits.setdefault((kind, per_token), LoadFit()).add(in_flight, y)

    def restart(self, kind: RequestKind, in_flight: int, latency_s: float, tokens: int | None) -> None:
        """An endpoint back from down: what it did before says little now; its first answer
        is its probe."""
        self.fits.clear()
        self.observe(kind, in_flight, latency_s, tokens)
        self.observe("probe", in_flight, latency_s, None)

    def finish_s(self, kind: RequestKind, in_flight: int, tokens: float | None) -> float | None:
        """How long one more ``kind`` request would take, sent now with ``in_flight`` there;
        ``tokens``: its expected output tokens, where the servers report usage. None: that
        kind not seen here yet."""
        if tokens and (kind, True) in self.fits:
            return tokens * (self.fits[kind, True].at(in_flight + 1) or 0.0)
        fit = self.fits.get((kind, False))
        return None if fit is None else fit.at(in_flight + 1)

    def expected_s(self, kind: RequestKind, in_flight: int, tokens: int | None) -> float | None:
        """How long a ``kind`` request sent with ``in_flight`` there (itself included) and asking
        for up to ``tokens`` output tokens may take, for its deadline: time per token at that
        load (this kind's, else the slowest other kind's seen here) x the tokens asked for, or
        the kind's time per request where the server reports no usage; None: nothing seen."""
        own = self.fits.get((kind, True))
        per_token = [own] if own else [f for (_, by_token), f in self.fits.items() if by_token]
        if tokens and per_token:
            return tokens * max(f.at(in_flight) or 0.0 for f in per_token)
        fit = self.fits.get((kind, False))
        return None if fit is None else fit.at(in_flight)


def fleet_finish_s(fleet: Sequence[Estimates], in_flight: Sequence[int], kind: RequestKind,
                   tokens: float | None) -> list[float | None]:
    """Each endpoint's time for one more ``kind`` request. Where the kind is not seen yet (a new
    or recovered endpoint), its probe's time is scaled by what that kind takes against the
    probe on the endpoints that have seen both: its speed relative to the others comes from the
    probe, not from zero (which would send it everything at once)."""
    ratios = []
    for est in fleet:
        own, probe = est.finish_s(kind, 0, tokens), est.finish_s("probe", 0, None)
        if own is not None and probe:
            ratios.append(own / probe)
    ratio = sum(ratios) / len(ratios) if ratios else 1.0
    out: list[float | None] = []
    for est, k in zip(fleet, in_flight):
        own = est.finish_s(kind, k, tokens)
        probe = est.finish_s("probe", k, None)
        out.append(own if own is not None else None if probe is None else probe * ratio)
    return out


@dataclass(frozen=True)
class Option:
    """An endpoint as the decision sees it."""

    in_flight: int
    finish_s: float | None  # one more request's expected time there; None: nothing seen yet
    ceiling: int | None = None  # its --endpoint-concurrency
    ready: bool = True  # its preflight passed and its breaker lets requests through
    avoid: bool = False  # the request just failed there
    prefer: bool = False  # the request's body was built for it


def choose(options: Sequence[Option]) -> int | None:
    """The index of the endpoint where one more request would finish first; None while none
    can take one (all down, or all at their ceiling). An endpoint with no estimate yet counts
    as the slowest known one; ties go to the fewest in flight, then away from ``avoid``, then
    to ``prefer``, then to the first."""
    open_ = [i for i, o in enumerate(options) if o.ready and (o.ceiling is None or o.in_flight < o.ceiling)]
    if not open_:
        return None
    unknown = max((options[i].finish_s for i in open_ if options[i].finish_s is not None), default=0.0)

    def key(i: int) -> tuple:
        o = options[i]
        return (unknown if o.finish_s is None else o.finish_s, o.in_flight, o.avoid, not o.prefer, i)

    return min(open_, key=key)


@dataclass
class Moving:
    """A moving mean, for the fleet's output tokens per request of each kind."""

    half_life: float = DEFAULT_HALF_LIFE
    w: float = 0.0
    s: float = 0.0

    def add(self, x: float) -> None:
        d = 0.5 ** (1.0 / self.half_life)
        self.w, self.s = self.w * d + 1, self.s * d + x

    @property
    def mean(self) -> float | None:
        return self.s / self.w if self.w else None
