"""This machine's PostgreSQL for the tests of a shared store: each test gets a schema of its own."""

from __future__ import annotations

import contextlib
import uuid
from typing import Iterator

import pytest
from sqlalchemy import create_engine, text

PG_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"


def pg_available() -> bool:
    try:
        with create_engine(PG_URL).connect() as c:
            c.execute(text("select 1"))
        return True
    except Exception:
        return False


@contextlib.contextmanager
def pg_schema(prefix: str = "t") -> Iterator[str]:
    """A URL on a fresh schema, dropped afterwards; the test is skipped where PostgreSQL is not running."""
    if not pg_available():
        pytest.skip("PostgreSQL is not running on 127.0.0.1:5432")
    schema = f"{prefix}_{uuid.uuid4().hex[:10]}"
    eng = create_engine(PG_URL)
    with eng.begin() as c:
        c.execute(text(f"create schema {schema}"))
    try:
        yield f"{PG_URL}?options=-csearch_path%3D{schema}"
    finally:
        with eng.begin() as c:
            c.execute(text(f"drop schema {schema} cascade"))
        eng.dispose()


def q(url: str, sql: str) -> list[tuple]:
    """The rows of one query, on a connection of its own."""
    engine = create_engine(url)
    try:
        with engine.connect() as c:
            return [tuple(r) for r in c.execute(text(sql))]
    finally:
        engine.dispose()


def count(url: str, table: str) -> int:
    """Rows in ``table``; 0 before the first worker has made it."""
    try:
        return q(url, f"select count(*) from {table}")[0][0]
    except Exception:
        return 0
