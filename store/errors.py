"""Errors of the store.

    StoreError                 root: anything the store refuses or cannot do
    ├── StoreUnavailable       the database cannot be opened or written (names it and what to do)
    ├── StoreBusy              another run process holds the database (names it)
    ├── LeaseLost              another worker took a record over after this one's lease ran out
    ├── RunMismatch            the database holds a run with another config or input (use --force)
    └── StoreStateError        an operation out of order (e.g. completing a step twice)
"""


class StoreError(Exception):
    """Root of the store's errors."""


class StoreUnavailable(StoreError):
    """The database cannot be opened, created or written: a folder given as the file, a full
    disk, a read-only file, a server that refuses, a missing database, an unknown URL scheme."""

    def __init__(self, db: str, cause: str, hint: str | None = None, resumable: bool = True,
                 transient: bool = False):
        self.db, self.cause, self.hint = db, cause, hint  # db: as it may be shown (password masked)
        # The server went away for a while (store.outage): a worker waits for it, up to --store-wait.
        self.transient = transient
        then = ", then run the same command; what is stored so far is kept" if resumable else ""
        super().__init__(f"database {db}: {cause}. To go on: {hint or 'fix that'}{then}")


class StoreBusy(StoreError):
    """Another run process holds this database."""

    def __init__(self, db: str, holder: str):
        self.db, self.holder = db, holder
        super().__init__(f"database {db} is in use by another reer run ({holder}): wait for it to end or stop it, "
                         "or give this run another --db")


class LeaseLost(StoreError):
    """This worker's lease on a record ran out and another worker took the record over: this
    one must leave it (its successor resumes it from what is stored)."""

    def __init__(self, record_id: int):
        self.record_id = record_id
        super().__init__(f"record {record_id} was taken over by another worker after this worker's lease ran out")


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
