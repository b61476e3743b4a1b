"""Batching of scoring requests, without a model (the lm-evaluation-harness ``Collator`` idea).

Requests are sorted longest first (an out-of-memory shows up in the first batch, not the last),
cut into batches whose padded size stays within a token budget, and results are put back in
request order. On out-of-memory a batch is halved and retried.
"""

from __future__ import annotations

from typing import Callable, Sequence, TypeVar

T = TypeVar("T")
R = TypeVar("R")


def plan_batches(lengths: Sequence[int], max_tokens: int, groups: Sequence[int] | None = None) -> list[list[int]]:
    """Indices of the requests, grouped into batches of at most ``max_tokens`` padded tokens
    (rows x longest row); a request longer than the budget gets a batch of its own. Requests
    of one ``groups`` id (sharers of a prefix) are kept next to each other, longest group first."""
    if groups is None:
        order = sorted(range(len(lengths)), key=lambda i: (-lengths[i], i))
    else:
        longest: dict[int, int] = {}
        for i, g in enumerate(groups):
            longest[g] = max(longest.get(g, 0), lengths[i])
        order = sorted(range(len(lengths)), key=lambda i: (-longest[groups[i]], groups[i], -lengths[i], i))
    return fill(order, lengths, max_tokens)


def fill(order: Sequence[int], sizes: Sequence[int], budget: int) -> list[list[int]]:
    """``order`` cut into consecutive chunks whose rows x largest size stays within ``budget``
    (what a padded batch costs); an item over budget alone gets a chunk of its own."""
    chunks: list[list[int]] = []
    largest = 0
    for i in order:
        if chunks and (len(chunks[-1]) + 1) * max(largest, sizes[i]) <= budget:
            chunks[-1].append(i)
            largest = max(largest, sizes[i])
        else:
            chunks.append([i])
            largest = sizes[i]
    return chunks


def take_round(sizes: Sequence[int], budget: int) -> int:
    """How many of the waiting requests, oldest first, the next round serves: as many as fit
    ``budget`` tokens together, and at least one (a request larger than the budget goes alone)."""
    total = n = 0
    for size in sizes:
        if n and total + size > budget:
            break
        total += size
        n += 1
    return n


def run_batched(
    items: Sequence[T],
    lengths: Sequence[int],
    max_tokens: int,
    run: Callable[[list[T]], list[R]],
    is_oom: Callable[[BaseException], bool],
    groups: Sequence[int] | None = None,
) -> list[R]:
    """``run`` over all items in planned batches; results in input order, each item exactly once."""
    results: list[R | None] = [None] * len(items)
    done = [False] * len(items)
    for batch in plan_batches(lengths, max_tokens, groups):
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


def common_prefix_len(a: Sequence[int], b: Sequence[int]) -> int:
    n = min(len(a), len(b))
    i = 0
    while i < n and a[i] == b[i]:
        i += 1
    return i


def prefix_groups(seqs: Sequence[Sequence[int]], limits: Sequence[int], min_prefix: int) -> list[tuple[int, list[int]]]:
    """Group requests that share a token prefix worth computing once.

    The candidates of one search step share everything before the rewritten segment (system
    prompt, question, kept segments). Sorting the token sequences puts sharers side by side;
    a group's prefix is the common prefix of all its members, cut to each member's ``limit``
    (the first position whose logits are needed must lie after the prefix). A request joins a
    group only if that does not shorten the group's prefix, so requests of different steps,
    which share just the prompt, are not merged into one group that reuses little. Returns
    ``(prefix_len, indices)``; a prefix shorter than ``min_prefix`` comes back as 0.
    """
    order = sorted(range(len(seqs)), key=lambda i: (list(seqs[i]), i))
    n = len(order)
    # lcp[k]: the prefix order[k] and order[k+1] share, within both limits
    lcp = [min(common_prefix_len(seqs[a], seqs[b]), limits[a], limits[b]) for a, b in zip(order, order[1:])]
    groups: list[tuple[int, list[int]]] = []
    k = 0
    while k < n:
        members, plen = [order[k]], 0
        while k + 1 < n:
            shared = lcp[k]
            if shared < min_prefix or (plen and shared < plen):
                break
            if k + 1 < n - 1 and lcp[k + 1] > shared:
                break  # order[k+1] shares more with the next one: it starts the next group
            plen = shared if not plen else min(plen, shared)
            members.append(order[k + 1])
            k += 1
        groups.append((plen, members))
        k += 1
    return groups


def group_ids(seqs: Sequence[Sequence[int]], limits: Sequence[int], min_prefix: int) -> list[int]:
    """A group id per request (``prefix_groups``), for ``plan_batches`` to keep sharers together."""
    ids = [0] * len(seqs)
    for g, (_, members) in enumerate(prefix_groups(seqs, limits, min_prefix)):
        for i in members:
            ids[i] = g
    return ids
