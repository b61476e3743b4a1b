"""Errors of the agents (the async side of reer).

    ReerError                  root: every error reer reports to the user
    ├── InputError             a bad input file or record (names the file and the record)
    ├── ConfigError            bad options, or options that do not fit the endpoint
    ├── StoreSpilled           the store stayed away past --store-wait, or failed for good: its error,
    │                          and the spill file that keeps the generations it could not store
    ├── ResultsUnwritten       the search is stored but the store went away while --out was written
    └── EndpointError          one request failed for good (the record may be retried, then fails)
        ├── RetryableError     a failure worth retrying: 429, 5xx, timeouts, dropped connections
        │   └── HungError      no answer within the request's deadline: the endpoint is taken for hung
        └── FatalEndpointError no request can succeed (bad key, wrong URL or model, endpoint down
                               for too long): the run stops, every record stays resumable

The scorer (``scorer.ScorerError``) and the store (``store.StoreError``) have their own roots;
``agents.run`` reports all three as one clear line.
"""

from __future__ import annotations

import shlex


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


class HungError(RetryableError):
    """The endpoint accepted the request but gave no answer within its deadline."""

    def __init__(self, message: str, waited_s: float):
        self.waited_s = waited_s
        super().__init__(message)


class StoreSpilled(ReerError):
    """The store did not come back within --store-wait (``waited``; or the run was stopped while
    waiting), or a write failed for a cause waiting cannot mend: the store's own line, and where
    the generations it could not store were kept."""

    def __init__(self, cause: Exception, held: int, path, waited: bool, failed: OSError | None = None):
        self.cause, self.held, self.path = cause, held, path
        which = f"the {held} generations " + ("held while it was down" if waited else "it could not store")
        if failed is None:
            kept = f"{which} are kept in {path}: the same command stores them first"
        else:
            kept = f"{which} could not be kept in {path} ({failed})"
        super().__init__(f"{cause} ({kept})")


class ResultsUnwritten(ReerError):
    """The search ended and is stored, but the store went away (past --store-wait) while the
    run's results were read for --out: the store's cause, and how to write them later."""

    def __init__(self, cause, out):
        self.cause, self.out = cause, out
        super().__init__(f"database {cause.db}: {cause.cause}, while the results were written to {out}. The run is "
                         f"stored and nothing is lost. To go on: {cause.hint or 'fix that'}, then write them with "
                         f"reer export --db {shlex.quote(cause.db)} --out {shlex.quote(str(out))} (or run the "
                         "same command)")


class PromptTooLong(EndpointError):
    """A request whose prompt alone does not fit the endpoint's context: never sent, and never
    sent again unchanged; the step that needed it is skipped."""
