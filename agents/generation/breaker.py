"""A circuit breaker for the generator endpoint (pure logic; the clock is passed in).

After ``threshold`` consecutive failures across all requests the endpoint is taken to be down:
requests wait (cooldown doubling up to ``max_cooldown_s``) instead of each burning its own
retries, so an endpoint that is down for minutes stalls the run rather than failing every
record. One success closes it again.
"""

from __future__ import annotations

from dataclasses import dataclass

DEFAULT_THRESHOLD = 5  # consecutive failed requests
DEFAULT_COOLDOWN_S = 2.0
DEFAULT_MAX_COOLDOWN_S = 60.0
DEFAULT_MAX_DOWN_S = 1800.0  # down longer than this: stop the run (records stay resumable)


@dataclass
class CircuitBreaker:
    threshold: int = DEFAULT_THRESHOLD
    cooldown_s: float = DEFAULT_COOLDOWN_S
    max_cooldown_s: float = DEFAULT_MAX_COOLDOWN_S
    max_down_s: float = DEFAULT_MAX_DOWN_S
    failures: int = 0
    trips: int = 0  # cooldowns since the endpoint went down: each one twice as long
    open_until: float = 0.0
    down_since: float | None = None

    def is_open(self) -> bool:
        return self.failures >= self.threshold

    def record_failure(self, now: float) -> None:
        self.failures += 1
        if not self.is_open() or now < self.open_until:
            return  # still closed, or a request sent before this cooldown: it proves nothing new
        if self.down_since is None:
            self.down_since = now
        self.open_until = now + min(self.max_cooldown_s, self.cooldown_s * 2 ** min(self.trips, 16))
        self.trips += 1

    def trip(self, now: float) -> None:
        """Open at once, whatever the count: one request past its deadline says the endpoint is
        hung, and every request sent there would wait as long."""
        self.failures = max(self.failures, self.threshold - 1)
        self.record_failure(now)

    def record_success(self) -> None:
        self.failures, self.trips, self.open_until, self.down_since = 0, 0, 0.0, None

    def wait_s(self, now: float) -> float:
        """How long a request must wait before trying (0 when closed or cooling down is over)."""
        return max(0.0, self.open_until - now) if self.is_open() else 0.0

    def down_for_s(self, now: float) -> float:
        return 0.0 if self.down_since is None else now - self.down_since

    def gave_up(self, now: float) -> bool:
        return self.down_for_s(now) > self.max_down_s
