"""The store's schema, versioned: a database made by an earlier reer is brought up to this
version's schema when it is opened, and one made by a later reer is refused.

A fresh database gets the current tables and the latest version at once; an existing one gets
each missing step, in order. All of it is one transaction under a lock (PostgreSQL: an advisory
lock; SQLite: ``BEGIN IMMEDIATE``), so workers that open a fresh or old database at the same
instant create or migrate it once: the others wait, then find it done. A new schema change is a
new entry in ``STEPS``, never an edit of an old one.
"""

from __future__ import annotations

from typing import Callable

from sqlalchemy import Column, Integer, MetaData, Table, event, inspect, select, text
from sqlalchemy.engine import Connection
from sqlalchemy.pool import NullPool
from sqlmodel import SQLModel

from store.database import engine_for, shown
from store.errors import StoreUnavailable
from store.holder import lock_schema
from store.models import TREE_COUNTERS, Node, Record, Step, Worker

# Its own metadata: the reader of an old database checks reer's tables, not this one.
VERSION_TABLE = Table("reer_schema", MetaData(), Column("version", Integer, nullable=False))


def _v2_workers(conn: Connection) -> None:
    Worker.__table__.create(conn)
    conn.execute(text("ALTER TABLE record ADD COLUMN worker_id INTEGER REFERENCES worker (id)"))
    for index in Record.__table__.indexes:
        if index.name in ("ix_record_worker_id", "ix_record_queue"):
            index.create(conn)


READING_INDEXES = {"ix_record_run_status", "ix_record_worker_status", "ix_node_usage", "ix_step_choice"}


def _v3_reading_indexes(conn: Connection) -> None:
    for table in (Record, Node, Step):
        for index in table.__table__.indexes:
            if index.name in READING_INDEXES - {"ix_record_run_status"}:
                index.create(conn, checkfirst=True)
    # As version 3 made it: version 4 adds the columns its later form covers.
    conn.execute(text("CREATE INDEX IF NOT EXISTS ix_record_run_status "
                      "ON record (run_id, status, position, initial_score, final_score, updated_at)"))


def _v4_tree_counters(conn: Connection) -> None:
    """The record's counters of its tree, filled from the tree; ix_record_run_status made again
    to cover them."""
    for name in TREE_COUNTERS[1:]:
        conn.execute(text(f"ALTER TABLE record ADD COLUMN {name} INTEGER NOT NULL DEFAULT 0"))
    conn.execute(text(
        "UPDATE record SET "
        "accepted_steps = (SELECT count(chosen_node_id) FROM step WHERE step.record_id = record.id), "
        "nodes = (SELECT count(*) FROM node WHERE node.record_id = record.id), "
        "rejected_nodes = (SELECT count(rejected) FROM node WHERE node.record_id = record.id), "
        "prompt_tokens = (SELECT coalesce(sum(prompt_tokens), 0) FROM node WHERE node.record_id = record.id), "
        "completion_tokens = (SELECT coalesce(sum(completion_tokens), 0) FROM node WHERE node.record_id = record.id)"))
    conn.execute(text("DROP INDEX IF EXISTS ix_record_run_status"))
    next(i for i in Record.__table__.indexes if i.name == "ix_record_run_status").create(conn)


# version: (what it changes, the change). Version 1 is the schema before versioning.
STEPS: dict[int, tuple[str, Callable[[Connection], None]]] = {
    2: ("workers share a run: the worker table, the worker holding each record, the queue's index", _v2_workers),
    3: ("indexes that cover what status, export and report read, so they read no long text", _v3_reading_indexes),
    4: ("each record counts its tree's nodes, steps and tokens, so status reads no node or step", _v4_tree_counters),
}
VERSION = max(STEPS)


def migrate(db: str, create: bool) -> bool:
    """Bring ``db`` to this version's schema (creating it, with ``create``, if it holds no
    tables); StoreUnavailable if it was made by a later reer. Nothing is done to a database
    holding no reer tables when ``create`` is off: the caller says so. True if it was at this
    version already."""
    engine = engine_for(db, poolclass=NullPool)
    if _current(engine):
        # The common case, and every reader's (status polled while workers write): no lock, which
        # on SQLite is the write lock, queued behind the workers' writes.
        engine.dispose()
        return True
    if engine.dialect.name == "sqlite":
        # pysqlite begins transactions lazily and never for DDL: take the write lock up front.
        event.listen(engine, "connect", lambda dbapi_conn, _: setattr(dbapi_conn, "isolation_level", None))
        event.listen(engine, "begin", lambda conn: conn.exec_driver_sql("BEGIN IMMEDIATE"))
    try:
        with engine.begin() as conn:
            lock_schema(conn)
            tables = set(inspect(conn).get_table_names())
            if "run" not in tables:
                if create:
                    SQLModel.metadata.create_all(conn)
                    VERSION_TABLE.create(conn)
                    conn.execute(VERSION_TABLE.insert().values(version=VERSION))
                return False
            found = conn.execute(select(VERSION_TABLE.c.version)).scalar() if "reer_schema" in tables else 1
            if found > VERSION:
                raise StoreUnavailable(shown(db), f"it was made by a later reer (schema version {found}; this reer "
                                       f"reads up to {VERSION})", "open it with that reer or a later one",
                                       resumable=False)
            for version in range(found + 1, VERSION + 1):
                STEPS[version][1](conn)
            if found < VERSION:
                if "reer_schema" not in tables:
                    VERSION_TABLE.create(conn)
                    conn.execute(VERSION_TABLE.insert().values(version=VERSION))
                else:
                    conn.execute(VERSION_TABLE.update().values(version=VERSION))
    finally:
        engine.dispose()
    return False


def _current(engine) -> bool:
    """The database holds this version's schema already (read without a lock: the version only
    moves up, and a migration that runs after this read finds nothing left to do)."""
    with engine.connect() as conn:
        if not inspect(conn).has_table(VERSION_TABLE.name):
            return False
        return conn.execute(select(VERSION_TABLE.c.version)).scalar() == VERSION
