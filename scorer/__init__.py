"""The PPL scorer: a separate process (torch) and the async client the agents use.

Public surface: ``ScorerClient`` and the errors; ``python -m scorer.server`` is the process.
Importing this package loads neither: the client (httpx) is loaded on first use, and torch
only ever inside the scorer process (``scorer.model``).
"""

from scorer.errors import ModelLoadError, ScorerError, ScorerUnavailable, ScoringInputError

__all__ = ["ModelLoadError", "ScorerClient", "ScorerError", "ScorerUnavailable", "ScoringInputError"]


def __getattr__(name: str):
    if name == "ScorerClient":  # the client's HTTP stack stays out of the scorer process
        from scorer.client import ScorerClient

        return ScorerClient
    raise AttributeError(f"module 'scorer' has no attribute {name!r}")
