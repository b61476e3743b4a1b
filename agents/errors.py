"""Errors of the agents (the async side of reer).

    ReerError                  root: every error reer reports to the user
    ├── InputError             a bad input file or record (names the file and the record)
    ├── ConfigError            bad options, or options that do not fit the endpoint
    └── EndpointError          one request failed for good (the record may be retried, then fails)
        ├── RetryableError     a failure worth retrying: 429, 5xx, timeouts, dropped connections
        └── FatalEndpointError no request can succeed (bad key, wrong URL or model, endpoint down
                               for too long): the run stops, every record stays resumable

The scorer (``scorer.ScorerError``) and the store (``store.StoreError``) have their own roots;
``agents.run`` reports all three as one clear line.
"""

from __future__ import annotations


class ReerError(Exception):
    """Root of reer's user-facing errors."""


class InputError(ReerError):
    def __init__(self, path: str, where: str | None, message: str):
        self.path, self.where = path, where
        super().__init__(f"{path}{': ' + where if where else ''}: {message}")


class ConfigError(ReerError):
    pass


class EndpointError(ReerError):
    def __init__(self, message: str, status: int | None = None, param: str | None = None):
        self.status, self.param = status, param  # param: the request field a 4xx names, if any
        super().__init__(message)


class FatalEndpointError(EndpointError):
    pass


class RetryableError(EndpointError):
    def __init__(self, message: str, status: int | None = None, retry_after_s: float | None = None):
        self.retry_after_s = retry_after_s
        super().__init__(message, status)
