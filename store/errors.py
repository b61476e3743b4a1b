"""Errors of the store.

    StoreError                 root: anything the store refuses or cannot do
    ├── RunMismatch            the database holds a run with another config or input (use --force)
    └── StoreStateError        an operation out of order (e.g. completing a step twice)
"""


class StoreError(Exception):
    """Root of the store's errors."""


class RunMismatch(StoreError):
    """The database already holds a run whose config or input differs from this one."""

    def __init__(self, differences: list[str]):
        self.differences = differences
        super().__init__(
            "this database holds a run with a different "
            + "; ".join(differences)
            + ". Use another --db, or --force to continue it with the new settings"
        )


class StoreStateError(StoreError):
    """A write that the record's state does not allow."""
