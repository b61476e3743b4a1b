"""Live counters of a run, updated by the agents and read by the dashboard (no I/O here)."""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass, field
from typing import Callable


@dataclass(frozen=True)
class Prices:
    """What the endpoint charges, per million prompt and completion tokens."""

    prompt: float = 0.0
    completion: float = 0.0

    def cost(self, prompt_tokens: int, completion_tokens: int) -> float:
        return (prompt_tokens * self.prompt + completion_tokens * self.completion) / 1e6

    def describe(self, prompt_tokens: int, completion_tokens: int) -> str:
        return f"${self.cost(prompt_tokens, completion_tokens):,.2f}"


@dataclass
class EndpointCounts:
    """One generator endpoint's share of a run, for its line on the dashboard."""

    url: str
    model: str = ""
    requests: int = 0
    errors: int = 0
    completion_tokens: int = 0
    state: str = "up"  # "down" while its circuit breaker is open


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
    retries: int = 0
    errors: int = 0
    scored: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    initial_scores: dict[int, float] = field(default_factory=dict)  # by record: a retried record counts once
    final_scores: dict[int, float] = field(default_factory=dict)
    last_errors: deque[str] = field(default_factory=lambda: deque(maxlen=5))
    started: float = field(default_factory=time.monotonic)
    phase: str = "starting"
    endpoint_down: bool = False  # the circuit breaker is open: requests are waiting
    on_error: Callable[[str], None] | None = None  # each error in full, as it happens (the run's log)
    prices: "Prices | None" = None  # per million tokens: the dashboard shows the cost so far
    endpoints: list[EndpointCounts] = field(default_factory=list)

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

    @staticmethod
    def mean(scores: dict[int, float]) -> float | None:
        return sum(scores.values()) / len(scores) if scores else None
