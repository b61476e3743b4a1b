"""Who may work on a database at once.

SQLite is one machine's file: one run process per database. A second is refused with the first
one's pid and host, instead of racing it. The lock is an exclusive ``flock`` on ``<db>.lock``
beside the database, which names the holder; it goes with the process that holds it, so a run
killed with ``kill -9`` leaves nothing stale behind.

A server database (PostgreSQL) is shared: any number of workers join one run and divide its
records through leases (``Store.claim``). What must happen once there — creating or migrating
the tables, creating the run, changing it with ``--force`` — happens in a transaction that holds
:func:`lock_schema`, so workers that start at the same instant queue for it instead of racing.
"""

from __future__ import annotations

import fcntl
import os
import socket
from pathlib import Path

from sqlalchemy import text
from sqlalchemy.engine import Connection

from store.errors import StoreBusy

LOCK_KEY = 0x5245_4552  # "REER": the advisory-lock namespace (the other key is the schema's hash)


def me() -> str:
    return f"pid {os.getpid()} on {socket.gethostname()}"


def lock_schema(conn: Connection) -> None:
    """Hold, until ``conn``'s transaction ends, the lock on reer's tables in its database and
    schema (PostgreSQL; elsewhere one process holds the database, or the dialect serializes)."""
    if conn.dialect.name == "postgresql":
        conn.execute(text(f"select pg_advisory_xact_lock({LOCK_KEY}, "
                          "hashtext(current_database() || '.' || current_schema()))"))


class Holder:
    """The right to run on ``db``, held until ``release`` (or the process's end). ``exclusive``:
    no other run process can be working on it (a SQLite file), so workers it finds marked
    live are dead."""

    def __init__(self, db: str):
        self.db = db
        self._fd: int | None = None
        self.exclusive = "://" not in db
        if self.exclusive:
            self._lock_file(Path(db).expanduser())

    def _lock_file(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(f"{path}.lock", os.O_RDWR | os.O_CREAT, 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 200).decode(errors="replace").strip() or "another process"
            os.close(fd)
            raise StoreBusy(self.db, holder) from None
        os.ftruncate(fd, 0)
        os.write(fd, me().encode())
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing the descriptor releases the flock
            self._fd = None
