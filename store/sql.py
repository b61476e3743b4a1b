"""SQL helpers shared by the store's query modules: the database's clock and one-row updates."""

from __future__ import annotations

import functools
from datetime import datetime
from typing import Any

from sqlalchemy import bindparam, text, update
from sqlalchemy.engine import Connection

from store.models import Node, RecordStatus, utcnow

UNFINISHED = (RecordStatus.pending, RecordStatus.running)


def db_now(conn: Connection) -> datetime:
    """The database's clock: every worker's leases are measured on it, whatever the clocks of
    their machines say. SQLite is one machine's file: its clock is this one."""
    if conn.dialect.name == "postgresql":
        return conn.execute(text("select now()")).scalar_one()
    return utcnow()


@functools.cache
def _update_statement(table: type, columns: tuple[str, ...]):
    return update(table).where(table.id == bindparam("row_id")).values({c: bindparam(c) for c in columns})


def set_row(conn, table: type, row_id: int, **values: Any) -> None:
    conn.execute(_update_statement(table, tuple(sorted(values))), {"row_id": row_id, **values})


def write_scores(conn, scores: dict[int, float]) -> None:
    conn.execute(_update_statement(Node, ("score",)), [{"row_id": k, "score": v} for k, v in scores.items()])
