"""The run's watchdog: when the run has made no progress for a while, one line saying what it
waits on (which part, how many requests, the oldest one's age).

Progress is whatever moves the run: a step stored, a record finished, a generation or a
scoring request answered. The caller hands over counters of those (``marks``: any tuple that
changes when the run moves) and the send times of the requests out at each part; the
watchdog notices the marks standing still. Pure: the caller passes the clock, and says the
line where a person sees it (``agents.worker``).

    no progress for 61 s: waiting on scorer http://10.0.0.7:8001 (3 requests, oldest 75 s)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Hashable, Mapping, Sequence

# Said once the run has stood still for ``after_s``, then again at doubling intervals (the ages
# in the line move on), at most this far apart, for as long as it stands still.
MAX_REPEAT_S = 600.0
MAX_PARTS_NAMED = 4  # one line: the parts waited on longest, then how many more


@dataclass(frozen=True)
class Waiting:
    """Requests out at one part with no answer yet."""

    part: str  # "endpoint URL" or "scorer URL"
    requests: int
    oldest_s: float  # how long the oldest of them has waited


def waiting_on(sent: Mapping[str, Sequence[float]], now: float) -> list[Waiting]:
    """The parts with requests out (``sent``: each part's send times), longest-waiting first."""
    out = [Waiting(part, len(times), now - min(times)) for part, times in sent.items() if times]
    return sorted(out, key=lambda w: (-w.oldest_s, w.part))


def stalled_line(idle_s: float, waiting: Sequence[Waiting], notes: Sequence[str] = ()) -> str:
    """The watchdog's one line: how long nothing moved, and what the run waits on (``notes``:
    what else holds it, such as the store being down)."""
    parts = [f"{w.part} ({w.requests} request{'s' * (w.requests != 1)}, oldest {w.oldest_s:.0f} s)"
             for w in waiting[:MAX_PARTS_NAMED]]
    if len(waiting) > MAX_PARTS_NAMED:
        parts.append(f"{len(waiting) - MAX_PARTS_NAMED} more parts")
    parts += notes
    what = "waiting on " + ", ".join(parts) if parts else "no request is out to an endpoint or a scorer"
    return f"no progress for {idle_s:.0f} s: {what}"


class Watchdog:
    """Feed it ``check`` now and then; it answers the line to say, or None.

    A run with nothing to wait on (no request out, no record running, nothing noted: a worker
    waiting for other workers' records) is idle, not stalled: its clock starts again."""

    def __init__(self, after_s: float):
        self.after_s = after_s
        self._marks: Hashable = object()
        self._since: float | None = None  # when the run last moved, or began to wait on something
        self._next_s = after_s  # the stillness at which the next line is due

    def stalled_s(self, now: float) -> float | None:
        """How long the run has stood still, once that is past ``after_s``; else None."""
        if self._since is None:
            return None
        idle = now - self._since
        return idle if idle >= self.after_s else None

    def check(self, now: float, marks: Hashable, sent: Mapping[str, Sequence[float]], notes: Sequence[str] = (),
              busy: bool = False) -> str | None:
        """``busy``: records are running here (so something is waited on even with no request out)."""
        waiting = waiting_on(sent, now)
        if marks != self._marks:
            self._marks, self._since, self._next_s = marks, now, self.after_s
        if not (busy or waiting or notes):
            self._since, self._next_s = None, self.after_s
            return None
        if self._since is None:
            self._since = now
        idle = now - self._since
        if idle < self._next_s:
            return None
        self._next_s = idle + min(max(idle, self.after_s), MAX_REPEAT_S)
        return stalled_line(idle, waiting, notes)
