"""The PPL scorer: a separate process (torch) and the async client the agents use.

Public surface: ``ScorerClient``, ``ScorerProcess``, the errors. ``scorer.model`` (torch) is
imported only inside the scorer process.
"""

from scorer.client import ScorerClient, ScorerProcess
from scorer.errors import ModelLoadError, ScorerError, ScorerUnavailable, ScoringInputError

__all__ = ["ModelLoadError", "ScorerClient", "ScorerError", "ScorerProcess", "ScorerUnavailable", "ScoringInputError"]
