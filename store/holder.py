"""One run process per database: a second is refused with the first one's pid and host, instead
of racing it (two runs created, steps "completed out of order", paid generations thrown away).

SQLite: an exclusive ``flock`` on ``<db>.lock`` beside the database, which names the holder.
PostgreSQL: a session advisory lock keyed on the database and schema, the holder named in its
connection's ``application_name``. Either goes with the process that holds it, so a run killed
with ``kill -9`` leaves nothing stale behind. Other databases are not locked.
"""

from __future__ import annotations

import fcntl
import os
import socket
from pathlib import Path

from sqlalchemy import text
from sqlalchemy.pool import NullPool

from store.database import engine_for, shown
from store.errors import StoreBusy

LOCK_KEY = 0x5245_4552  # "REER": the advisory-lock namespace (the other key is the schema's hash)
_SCHEMA_KEY = "hashtext(current_database() || '.' || current_schema())"
_HOLDER = (f"select a.application_name, a.client_addr from pg_locks l join pg_stat_activity a on a.pid = l.pid "
           f"where l.locktype = 'advisory' and l.granted and l.classid = {LOCK_KEY}::int4::oid "
           f"and l.objid = {_SCHEMA_KEY}::oid and l.objsubid = 2")


def me() -> str:
    return f"pid {os.getpid()} on {socket.gethostname()}"


class Holder:
    """The right to run on ``db``, held until ``release`` (or the process's end)."""

    def __init__(self, db: str):
        self.db = db
        self._fd: int | None = None
        self._conn = None
        if "://" not in db:
            self._lock_file(Path(db).expanduser())
        elif db.split("://", 1)[0].split("+", 1)[0] in ("postgresql", "postgres"):
            self._lock_postgres()

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

    def _lock_postgres(self) -> None:
        # NullPool: closing the connection ends the session, and the lock with it. The store's
        # engine says a refused connection as such (StoreUnavailable), not as a lock.
        engine = engine_for(self.db, poolclass=NullPool, connect_args={"application_name": f"reer run {me()}"})
        conn = engine.connect()
        if not conn.execute(text(f"select pg_try_advisory_lock({LOCK_KEY}, {_SCHEMA_KEY})")).scalar():
            row = conn.execute(text(_HOLDER)).first()
            conn.close()
            engine.dispose()
            name = row[0].removeprefix("reer run ") if row and row[0] else "another session"
            raise StoreBusy(shown(self.db), f"{name} (from {row[1]})" if row and row[1] else name)
        conn.commit()  # the lock is the session's, not the transaction's: nothing else to keep open
        self._conn, self._engine = conn, engine

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing the descriptor releases the flock
            self._fd = None
        if self._conn is not None:
            self._conn.close()  # NullPool: the session ends, and its advisory lock with it
            self._engine.dispose()
            self._conn = None
