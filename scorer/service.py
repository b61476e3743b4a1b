"""The scorer's queue and its one model thread: requests in, batches through the model, scores out.

HTTP handlers encode and enqueue (``submit``) and wait on the futures; the model thread
(``loop``) drains the queue into rounds and batches. Free of HTTP and of torch (the model is
handed in once it has loaded), so it is tested with a stand-in model.
"""

from __future__ import annotations

import queue
import time
from collections import deque
from concurrent.futures import Future
from dataclasses import dataclass, field

from scorer.batching import plan_batches, run_halving, take_round
from scorer.errors import ScorerError, ScoringInputError
from scorer.protocol import CheckItem, ScoreItem

DEFAULT_MAX_BATCH_TOKENS = 16384  # padded tokens per forward pass on CPU
CUDA_MAX_BATCH_TOKENS = 65536  # a GPU needs more rows per forward to be busy (bench/gpu.sh)
GATHER_WINDOW_S = 0.005  # after the first request, wait this long for others to batch with it
ROUND_BATCHES = 4  # a round serves at most this many batches' worth of the oldest requests


@dataclass
class Job:
    """One HTTP request's items, queued together so that they are served in the same round."""

    encs: list
    futures: list[Future]
    arrived: float = field(default_factory=time.monotonic)

    @property
    def tokens(self) -> int:
        return sum(len(e) for e in self.encs)


class ScoringService:
    """Queue + model thread. ``model`` is set once loading finishes.

    The model thread serves rounds: the oldest waiting requests, as many as fit
    ``ROUND_BATCHES`` batches' worth of tokens (at least one), planned into batches longest
    first. Admission is first come first served, so no request, however large, can keep the
    others waiting for more than the rounds ahead of it; each batch's callers are answered as
    soon as that batch is done."""

    def __init__(self, max_batch_tokens: int = DEFAULT_MAX_BATCH_TOKENS):
        self.model = None
        self.error: str | None = None
        self.max_batch_tokens = max_batch_tokens
        self._queue: queue.Queue[Job] = queue.Queue()
        self._backlog: deque[Job] = deque()
        self.scored = 0
        self.rounds = 0
        self.max_wait_s = 0.0

    def check(self, item: CheckItem) -> int:
        if self.model is None:
            raise ScorerError("the scorer is not ready")
        return len(self.model.encode(item.question, "", item.answer, item.lang))

    def submit(self, items: list[ScoreItem]) -> list[Future]:
        """Queue a request's items together; an item that cannot be encoded (too long) gets a
        future that already holds its ``ScoringInputError``."""
        if self.model is None:
            raise ScorerError("the scorer is not ready")
        futures: list[Future] = []
        job = Job([], [])
        for it in items:
            fut: Future = Future()
            try:
                enc = self.model.encode(it.question, it.thinking, it.answer, it.lang)
            except ScoringInputError as exc:
                fut.set_exception(exc.with_traceback(None))  # its frames hold the item's whole encoding
                fut.tokens = 0  # type: ignore[attr-defined]
            else:
                fut.tokens = len(enc.positions)  # type: ignore[attr-defined]
                job.encs.append(enc)
                job.futures.append(fut)
            futures.append(fut)
        if job.encs:
            self._queue.put(job)
        return futures

    def loop(self) -> None:
        while True:
            self.serve_round(self.next_round())

    def next_round(self) -> list[Job]:
        """Wait for work, then take the oldest jobs that fit one round."""
        if not self._backlog:
            self._backlog.append(self._queue.get())
            deadline = time.monotonic() + GATHER_WINDOW_S  # let a burst of requests batch together
            while (left := deadline - time.monotonic()) > 0:
                try:
                    self._backlog.append(self._queue.get(timeout=left))
                except queue.Empty:
                    break
        while True:  # and everything else already waiting
            try:
                self._backlog.append(self._queue.get_nowait())
            except queue.Empty:
                break
        n = take_round([job.tokens for job in self._backlog], ROUND_BATCHES * self.max_batch_tokens)
        return [self._backlog.popleft() for _ in range(n)]

    def serve_round(self, jobs: list[Job]) -> None:
        from scorer.devices import is_oom

        now = time.monotonic()
        self.max_wait_s = max([self.max_wait_s, *(now - job.arrived for job in jobs)])
        encs = [e for job in jobs for e in job.encs]
        futures = [f for job in jobs for f in job.futures]
        try:
            groups = self.model.groups(encs)
        except Exception:  # grouping is an optimisation: never a reason to fail
            groups = None
        for batch in plan_batches([len(e) for e in encs], self.max_batch_tokens, groups):
            try:
                scores = run_halving([encs[i] for i in batch], self.model.score, is_oom)
            except BaseException as exc:  # answer this batch's callers, then keep serving
                for i in batch:
                    futures[i].set_exception(exc)
                continue
            for i, s in zip(batch, scores):
                futures[i].set_result(s)
            self.scored += len(batch)
        self.rounds += 1


def or_error(fn, item):
    try:
        return fn(item)
    except ScoringInputError as exc:
        # Without its traceback: the frames hold the item's encoding, and a request of thousands
        # of refused items would keep every one of them alive until the response is sent.
        return exc.with_traceback(None)


def result_or_error(fut: Future):
    """An item's score, or its ``ScoringInputError``; any other failure propagates."""
    exc = fut.exception()
    if exc is not None and not isinstance(exc, ScoringInputError):
        raise exc
    return exc if exc is not None else fut.result()
