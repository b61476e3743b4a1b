"""Live counters of a run, updated by the agents and read by the dashboard (no I/O here)."""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass, field
from typing import Callable

from agents.config import Prices


@dataclass
class EndpointCounts:
    """One generator endpoint's share of a run, for its line on the dashboard."""

    url: str
    model: str = ""
    requests: int = 0
    errors: int = 0
    completion_tokens: int = 0
    state: str = "up"  # "down"/"hung" while its circuit breaker is open, "waiting" for its preflight, "refused"
    in_flight: int = 0
    sent: list[float] = field(default_factory=list)  # when each request in flight was first sent (monotonic)
    moved: int = 0  # requests abandoned past their deadline and sent elsewhere
    ceiling: int | None = None  # its --endpoint-concurrency
    estimate_s: dict[str, float] = field(default_factory=dict)  # one request's time at no load, by kind
    length_refusals: int = 0  # requests it refused for length (each learned from, none sent again unchanged)
    too_long: int = 0  # requests not sent: their prompt alone does not fit its context


@dataclass
class Stats:
    total: int = 0
    done: int = 0
    failed: int = 0
    skipped: int = 0
    running: int = 0
    already_done: int = 0  # finished in an earlier invocation
    steps: int = 0
    accepted: int = 0
    requests: int = 0
    answered: int = 0  # generation requests answered (the watchdog's sign of progress)
    retries: int = 0
    errors: int = 0
    scored: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    # Draft scores of the records in flight only: a finished record leaves nothing but the sums
    # below, so a worker's memory follows its concurrency, not the run's size.
    drafts_in_flight: dict[int, float] = field(default_factory=dict)
    scored_records: int = 0  # records whose draft and final score were both seen here
    initial_sum: float = 0.0
    final_sum: float = 0.0
    last_errors: deque[str] = field(default_factory=lambda: deque(maxlen=5))
    started: float = field(default_factory=time.monotonic)
    phase: str = "starting"
    endpoint_down: bool = False  # the circuit breaker is open: requests are waiting
    store_down_since: float | None = None  # monotonic time the store stopped answering, while it is down
    store_wait_s: float = 0.0  # --store-wait: how long it is waited for
    wasted: int = 0  # generations held while the store was down, for records another worker took over
    on_error: Callable[[str], None] | None = None  # each error in full, as it happens (the run's log)
    prices: "Prices | None" = None  # per million tokens: the dashboard shows the cost so far
    endpoints: list[EndpointCounts] = field(default_factory=list)
    scorers: dict[str, str] = field(default_factory=dict)  # several scorers: each one's state ("hung, 3 moved")
    stalled_s: float | None = None  # the run has made no progress this long (the watchdog): waiting
    loop_lag_max_s: float = 0.0  # the longest the event loop was late (store writes block it)
    rps_limit: float | None = None  # --rps, shown beside the rate it limits
    tpm_limit: int | None = None  # --tpm
    tokens_last_minute: int = 0  # what --tpm counts, as last seen

    def elapsed_s(self) -> float:
        return max(time.monotonic() - self.started, 1e-9)

    def error(self, message: str) -> None:
        self.errors += 1
        self.last_errors.append(message)
        if self.on_error is not None:
            self.on_error(message)

    @property
    def finished(self) -> int:
        return self.done + self.failed + self.skipped

    def eta_s(self) -> float | None:
        remaining = self.total - self.already_done - self.finished
        if self.finished == 0 or remaining <= 0:
            return None
        return self.elapsed_s() / self.finished * remaining

    def draft_scored(self, record_id: int, score: float) -> None:
        self.drafts_in_flight[record_id] = score  # a retried record's draft counts once

    def record_ended(self, record_id: int, final_score: float | None = None) -> None:
        """A record's search ended here (``final_score``: it is done); its draft score, if it
        was seen here, joins the sums with the final one."""
        initial = self.drafts_in_flight.pop(record_id, None)
        if initial is not None and final_score is not None:
            self.scored_records += 1
            self.initial_sum += initial
            self.final_sum += final_score

    def score_change(self) -> tuple[float | None, float | None]:
        """The mean draft score and the mean final score over the same records: those whose
        search ended in this process after their draft was scored here. (Records in flight have
        no final score yet, resumed ones no draft score here: either would skew one mean.)"""
        if not self.scored_records:
            return None, None
        return self.initial_sum / self.scored_records, self.final_sum / self.scored_records
