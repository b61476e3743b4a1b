"""Opening and writing a database: every failure is one StoreUnavailable naming the database,
the cause and what to do; a write that fails lands whole or not at all."""

import socket

import pytest
from sqlalchemy import event

from store import Node, NodeKind, RecordIn, Step, Store, StoreUnavailable, database
from tests.support.pg import PG_URL
from tests.support.pg import pg_available as _pg_available


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("make_db, cause, hint", [
    (lambda t: str(t), "it is a folder", "give a file path"),
    (lambda t: "/proc/no/such/x.db", "its folder cannot be created", "in a folder you can write to"),
    (lambda t: (t / "x.db").write_text("not sqlite") and str(t / "x.db"), "file is not a database",
     "use another --db"),
    (lambda t: "foo://u:secret@h/db", "not a database URL reer can use", "postgresql+psycopg://"),
    (lambda t: "postgresql+asyncpg://u:secret@h/db", "its driver is not installed", "'asyncpg'"),
    (lambda t: f"postgresql+psycopg://u:secret@127.0.0.1:{closed_port()}/test", "Connection refused",
     "server is running"),
])
def test_a_database_that_cannot_open_says_which_why_and_what_to_do(tmp_path, make_db, cause, hint):
    db = make_db(tmp_path)
    with pytest.raises(StoreUnavailable) as err:
        Store.open(db)
    message = str(err.value)
    assert message.startswith(f"database {database.shown(db)}: ") and cause in message and hint in message
    assert "secret" not in message and "\n" not in message


def test_postgres_without_the_database_says_create_it():
    if not _pg_available():
        pytest.skip("PostgreSQL is not running on 127.0.0.1:5432")
    url = PG_URL.replace("postgres@", "postgres:secret@").rsplit("/", 1)[0] + "/reer_no_such_db"
    with pytest.raises(StoreUnavailable, match=r'database "reer_no_such_db" does not exist.*createdb') as err:
        Store.open(url)
    assert "secret" not in str(err.value) and ":***@" in str(err.value)


def test_too_little_free_space_is_refused_before_anything_is_written(tmp_path, monkeypatch):
    monkeypatch.setattr(database.shutil, "disk_usage", lambda p: type("U", (), {"free": 4096})())
    with pytest.raises(StoreUnavailable, match=r"its file system is full \(4 KiB free\)"):
        Store.open(str(tmp_path / "x.db"))
    assert not (tmp_path / "x.db").exists()


def test_tables_of_another_shape_are_refused(tmp_path):
    import sqlite3
    con = sqlite3.connect(tmp_path / "x.db")
    con.execute("create table record (id integer primary key, name text)")
    con.close()
    with pytest.raises(StoreUnavailable, match=r"table 'record' lacks the columns .*'question'"):
        Store.open(str(tmp_path / "x.db"))


def test_a_write_on_a_full_database_fails_whole_and_the_run_goes_on_after(tmp_path):
    db = str(tmp_path / "x.db")
    st = Store.open(db)
    run = st.begin_run({}, "in", [RecordIn(key="0", position=0, question="q", answer="a", lang="en")]).run_id
    rec = st.records_to_run(run)[0]
    st.engine.dispose()
    # a database that may not grow: what a full disk looks like to SQLite
    event.listen(st.engine, "connect", lambda c, _r: c.execute(f"PRAGMA max_page_count={pages(c)}"))
    stored = 0
    with pytest.raises(StoreUnavailable, match=r"database or disk is full.*free space") as err:
        for i in range(1000):
            st.add_node(Node(record_id=rec.id, kind=NodeKind.candidate, step=0, idx=i, text="x" * 3000, raw=""))
            stored += 1
    assert err.value.db == db and stored > 0
    with pytest.raises(StoreUnavailable):  # the step and the scores of its candidates: all or nothing
        st.complete_step(rec.id, Step(record_id=rec.id, step=0, segment="s" * 8000, kept="k" * 8000, best_after=1.0),
                         {n.id: 0.5 for n in st.load_progress(rec.id).candidates[0]})
    st.close()

    st = Store.open(db)
    progress = st.load_progress(rec.id)
    assert len(progress.candidates[0]) == stored and not progress.steps
    assert all(n.score is None for n in progress.candidates[0])
    st.complete_step(rec.id, Step(record_id=rec.id, step=0, segment="s", kept="k", best_after=1.0))
    assert len(st.load_progress(rec.id).steps) == 1


def pages(conn) -> int:
    return conn.execute("PRAGMA page_count").fetchone()[0] + 2


def test_reading_a_database_that_holds_no_run_creates_nothing(tmp_path):
    with pytest.raises(StoreUnavailable, match=r"no such database\. To go on: give the --db of a run$"):
        Store.open(str(tmp_path / "none.db"), create=False)
    assert not (tmp_path / "none.db").exists()
    import sqlite3
    sqlite3.connect(tmp_path / "empty.db").close()
    with pytest.raises(StoreUnavailable, match="it holds no reer run"):
        Store.open(str(tmp_path / "empty.db"), create=False)
    Store.open(str(tmp_path / "run.db")).close()
    Store.open(str(tmp_path / "run.db"), create=False).close()


def test_checking_a_database_creates_nothing(tmp_path):
    Store.check(str(tmp_path / "new" / "deeper" / "x.db"))
    assert not (tmp_path / "new").exists()
    (tmp_path / "file").write_text("")
    for db, cause in [(str(tmp_path), "it is a folder"), (str(tmp_path / "file" / "x.db"), "is not a folder"),
                      (f"postgresql+psycopg://u@127.0.0.1:{closed_port()}/x", "Connection refused")]:
        with pytest.raises(StoreUnavailable, match=cause):
            Store.check(db)
