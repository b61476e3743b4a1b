"""The PPL scorer: a separate process (torch) and the async client the agents use.

Public surface: ``ScorerClient`` and the errors; ``python -m scorer.server`` is the process. ``scorer.model`` (torch) is
imported only inside the scorer process.
"""

from scorer.client import ScorerClient
from scorer.errors import ModelLoadError, ScorerError, ScorerUnavailable, ScoringInputError

__all__ = ["ModelLoadError", "ScorerClient", "ScorerError", "ScorerProcess", "ScorerUnavailable", "ScoringInputError"]
