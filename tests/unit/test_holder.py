"""One run process per SQLite database: a second holder is refused, naming the first; released,
the database is free again. (A server database is shared by workers: tests/unit/test_leases.py.)"""

import os

import pytest

from store import Store, StoreBusy


def test_a_second_run_on_a_sqlite_database_is_refused_with_the_holders_pid(tmp_path):
    db = str(tmp_path / "sub" / "run.db")
    first = Store.hold(db)
    with pytest.raises(StoreBusy, match=rf"database {db} is in use by another reer run \(pid {os.getpid()} on "):
        Store.hold(db)
    Store.hold(str(tmp_path / "other.db")).release()  # another database is another lock
    first.release()
    Store.hold(db).release()


def test_a_server_database_is_not_held_exclusively():
    holder = Store.hold("postgresql+psycopg://u@127.0.0.1:1/none")  # nothing to lock: no connection made
    assert not holder.exclusive
    holder.release()
