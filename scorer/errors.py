"""Errors of the scorer.

    ScorerError                root: the scorer cannot score
    ├── ModelLoadError         the scoring model or its tokenizer cannot be loaded
    ├── ScoringInputError      a request the scorer cannot score (e.g. longer than the context)
    └── ScorerUnavailable      the scorer process died, never came up, or does not answer
"""


class ScorerError(Exception):
    """Root of the scorer's errors."""


class ModelLoadError(ScorerError):
    pass


class ScoringInputError(ScorerError):
    pass


class ScorerUnavailable(ScorerError):
    pass
