"""An LRU of KV caches keyed by the token prefix they cover, within a byte budget. Pure logic.

A record's search visits its segments in order, so the prefix that step k's candidates share
(prompt + kept segments) is itself a prefix of step k+1's. Keeping the cache of that prefix lets
the next step compute only the segment it adds. Entries are looked up by the longest stored key
that is a prefix of the wanted tokens; a new entry supersedes the stored entries it extends (the
search never goes back to a shorter prefix of the same record), and the least recently used
entries are evicted until the total fits ``max_bytes``.

Values are opaque here (a torch cache in the scorer), so the policy is tested without a model.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from typing import Generic, Sequence, TypeVar

V = TypeVar("V")


@dataclass
class CacheStats:
    hits: int = 0
    misses: int = 0
    tokens_reused: int = 0
    evictions: int = 0


class PrefixCache(Generic[V]):
    def __init__(self, max_bytes: int):
        self.max_bytes = max_bytes
        self._entries: OrderedDict[tuple[int, ...], tuple[V, int]] = OrderedDict()
        self.bytes = 0
        self.stats = CacheStats()

    def __len__(self) -> int:
        return len(self._entries)

    def _longest_key(self, ids: tuple[int, ...]) -> tuple[int, ...] | None:
        return max((key for key in self._entries if _is_prefix(key, ids)), key=len, default=None)

    def longest(self, ids: Sequence[int]) -> int:
        """How many leading tokens of ``ids`` a stored entry covers (no use is recorded)."""
        best = self._longest_key(tuple(ids))
        return len(best) if best else 0

    def lookup(self, ids: Sequence[int]) -> tuple[int, V | None]:
        """The longest stored key that is a prefix of ``ids``: (its length, its value), or (0, None)."""
        best = self._longest_key(tuple(ids))
        if best is None:
            self.stats.misses += 1
            return 0, None
        self._entries.move_to_end(best)
        self.stats.hits += 1
        self.stats.tokens_reused += len(best)
        return len(best), self._entries[best][0]

    def put(self, key: Sequence[int], value: V, nbytes: int) -> bool:
        """Store ``value`` for the prefix ``key``; False if it alone exceeds the budget."""
        key = tuple(key)
        if nbytes > self.max_bytes or not key:
            return False
        for old in [k for k in self._entries if _is_prefix(k, key)]:
            self._drop(old)  # superseded: same record, an earlier step (or the same key again)
        self._entries[key] = (value, nbytes)
        self.bytes += nbytes
        while self.bytes > self.max_bytes:
            self._drop(next(iter(self._entries)))
            self.stats.evictions += 1
        return True

    def _drop(self, key: tuple[int, ...]) -> None:
        _, nbytes = self._entries.pop(key)
        self.bytes -= nbytes

    def clear(self) -> None:
        self._entries.clear()
        self.bytes = 0
        self.stats = CacheStats()


def _is_prefix(a: tuple[int, ...], b: tuple[int, ...]) -> bool:
    return len(a) <= len(b) and b[: len(a)] == a
