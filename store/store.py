"""Every read and write of the search tree, named for what it does. The search never writes SQL.

SQLite by default (a path), any SQLAlchemy URL otherwise. Each method is one short transaction,
so a crash between two calls loses at most the call in flight.

``Store`` is the one facade; its queries live by concept: the run (``store.runs``), workers and
their leases (``store.leases``), one record's search tree (``store.tree``), reading a run
(``store.reading``) and browsing it page by page (``store.browse``).
"""

from __future__ import annotations

from sqlalchemy.engine import Engine
from sqlmodel import Session

from store.browse import RunBrowsing
from store.database import check, open_engine, open_read_only_engine, prepare
from store.holder import Holder
from store.leases import LeaseQueries
from store.migrations import migrate
from store.reading import RunReading
from store.runs import RunQueries
from store.tree import TreeWrites


class Store(RunQueries, LeaseQueries, TreeWrites, RunReading, RunBrowsing):
    def __init__(self, engine: Engine):
        self.engine = engine
        # Set once this process has joined a run as a worker: every write to a record is then
        # fenced on holding it, so a worker whose lease ran out cannot write over its successor.
        self.worker_id: int | None = None
        self.lease_s = 0.0

    @staticmethod
    def check(db: str) -> None:
        """StoreUnavailable unless ``db`` can be opened and written; creates nothing."""
        check(db)

    @staticmethod
    def hold(db: str) -> Holder:
        """The right to run on ``db`` (``release`` it at the end); StoreBusy, naming the holder,
        while another run process has it."""
        return Holder(db)

    @classmethod
    def open(cls, db: str, create: bool = True) -> "Store":
        """The store in ``db``, its tables created (``create``) or required to exist already;
        StoreUnavailable (one line: the database, the cause, what to do) if it cannot be
        opened, and later if a write fails."""
        prepare(db, create)
        # A store found at this schema's version was made by reer: its tables need no checking
        # (a dozen catalog queries on PostgreSQL, a good part of a status's start-up).
        return cls(open_engine(db, check_tables=not migrate(db, create)))

    @classmethod
    def open_read_only(cls, db: str) -> "Store":
        """The store in ``db`` for reading only: nothing created or migrated, and the database
        itself refuses a write (``reer serve``)."""
        return cls(open_read_only_engine(db))

    def close(self) -> None:
        self.engine.dispose()

    def _session(self) -> Session:
        return Session(self.engine, expire_on_commit=False)
