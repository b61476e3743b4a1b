"""Batching of scoring requests, without a model (the lm-evaluation-harness ``Collator`` idea).

Requests are sorted longest first (an out-of-memory shows up in the first batch, not the last),
cut into batches whose padded size stays within a token budget, and results are put back in
request order. On out-of-memory a batch is halved and retried.
"""

from __future__ import annotations

from typing import Callable, Sequence, TypeVar

T = TypeVar("T")
R = TypeVar("R")


def plan_batches(lengths: Sequence[int], max_tokens: int) -> list[list[int]]:
    """Indices of the requests, grouped into batches of at most ``max_tokens`` padded tokens
    (rows x longest row); a request longer than the budget gets a batch of its own."""
    order = sorted(range(len(lengths)), key=lambda i: (-lengths[i], i))
    batches: list[list[int]] = []
    for i in order:
        if batches and (len(batches[-1]) + 1) * lengths[batches[-1][0]] <= max_tokens:
            batches[-1].append(i)
        else:
            batches.append([i])
    return batches


def run_batched(
    items: Sequence[T],
    lengths: Sequence[int],
    max_tokens: int,
    run: Callable[[list[T]], list[R]],
    is_oom: Callable[[BaseException], bool],
) -> list[R]:
    """``run`` over all items in planned batches; results in input order, each item exactly once."""
    results: list[R | None] = [None] * len(items)
    done = [False] * len(items)
    for batch in plan_batches(lengths, max_tokens):
        for i, r in zip(batch, run_halving([items[i] for i in batch], run, is_oom)):
            results[i], done[i] = r, True
    assert all(done), "every request must get a result"
    return results  # type: ignore[return-value]


def run_halving(batch: list[T], run: Callable[[list[T]], list[R]], is_oom: Callable[[BaseException], bool]) -> list[R]:
    """Run a batch; on out-of-memory, run each half separately (down to one item, then raise)."""
    try:
        out = run(batch)
    except BaseException as exc:
        if not is_oom(exc) or len(batch) == 1:
            raise
        mid = len(batch) // 2
        return run_halving(batch[:mid], run, is_oom) + run_halving(batch[mid:], run, is_oom)
    if len(out) != len(batch):
        raise RuntimeError(f"batch of {len(batch)} returned {len(out)} results")
    return out
