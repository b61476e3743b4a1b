"""One scoring request, tokenized: what the engine scores and what batching plans with.

Free of torch, so that batching and the service's queue can be tested without a model.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Encoded:
    """The ids, the positions whose tokens are scored, and the positions where a thinking
    paragraph starts (where a prefix cache is worth keeping)."""

    ids: list[int]
    positions: list[int]
    breaks: tuple[int, ...] = ()

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def limit(self) -> int:
        """How much of the text may lie in a shared prefix: up to the first predicting position."""
        return self.positions[0] - 1
