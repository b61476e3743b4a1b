"""One run process per database: a second holder is refused, naming the first; released, the
database is free again."""

import os
import uuid

import pytest
from sqlalchemy import create_engine, text

from store import Store, StoreBusy
from tests.unit.test_store import PG_URL, _pg_available


def test_a_second_run_on_a_sqlite_database_is_refused_with_the_holders_pid(tmp_path):
    db = str(tmp_path / "sub" / "run.db")
    first = Store.hold(db)
    with pytest.raises(StoreBusy, match=rf"database {db} is in use by another reer run \(pid {os.getpid()} on "):
        Store.hold(db)
    Store.hold(str(tmp_path / "other.db")).release()  # another database is another lock
    first.release()
    Store.hold(db).release()


def test_a_second_run_on_a_postgres_schema_is_refused_and_another_schema_is_free():
    if not _pg_available():
        pytest.skip("PostgreSQL is not running on 127.0.0.1:5432")
    eng = create_engine(PG_URL)
    schemas = [f"h_{uuid.uuid4().hex[:8]}" for _ in range(2)]
    with eng.begin() as c:
        for s in schemas:
            c.execute(text(f"create schema {s}"))
    try:
        a, b = (f"{PG_URL.replace('postgres@', 'postgres:pw@')}?options=-csearch_path%3D{s}" for s in schemas)
        first = Store.hold(a)
        with pytest.raises(StoreBusy, match=rf"in use by another reer run \(pid {os.getpid()} on .* \(from 127\.0\.0\.1\)"
                                            r"\)") as err:
            Store.hold(a)
        assert "pw" not in str(err.value)
        Store.hold(b).release()
        first.release()
        Store.hold(a).release()
    finally:
        with eng.begin() as c:
            for s in schemas:
                c.execute(text(f"drop schema {s} cascade"))
