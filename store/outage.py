"""Which store failures pass by themselves (the server restarting, a network hiccup, a failover)
and which need a person (a full disk, a read-only file, a missing table, bad credentials).

A worker rides out the first kind for up to ``--store-wait`` and stops at once on the second.
The driver's SQLSTATE decides where there is one; a connection that failed or was cut has
none, and is transient unless its message names a cause that waiting cannot mend.
"""

from __future__ import annotations

import re

# Class 08: connection exceptions (refused, lost, rejected). 57P01-03: the server shutting down,
# crashed or still starting (in recovery after a restart or failover). 40001/40P01: a
# serialization failure or deadlock, which the same transaction run again gets past.
# 53300: too many connections, which frees as other clients leave.
TRANSIENT_CLASSES = ("08",)
TRANSIENT_SQLSTATES = frozenset({"57P01", "57P02", "57P03", "40001", "40P01", "53300"})

# Said by a connection that failed without a SQLSTATE, for causes that no retry mends.
_PERMANENT = re.compile(
    r"password authentication failed|no password supplied|role \"[^\"]*\" does not exist"
    r"|database \"[^\"]*\" does not exist|failed to resolve host|SSL", re.IGNORECASE)
# SQLite's only failure that passes by itself: another process holding the lock a moment.
_SQLITE_TRANSIENT = re.compile(r"database is locked|database table is locked", re.IGNORECASE)


def is_transient(exc: BaseException, is_disconnect: bool = False) -> bool:
    """Whether ``exc``, a driver's exception (psycopg, sqlite3), is worth waiting out.
    ``is_disconnect``: SQLAlchemy found that the connection itself is gone."""
    message = str(exc)
    if type(exc).__module__.startswith("sqlite3"):
        return bool(_SQLITE_TRANSIENT.search(message))
    sqlstate = getattr(exc, "sqlstate", None)
    if sqlstate:
        return sqlstate.startswith(TRANSIENT_CLASSES) or sqlstate in TRANSIENT_SQLSTATES
    if _PERMANENT.search(message):
        return False
    return is_disconnect or type(exc).__name__ == "OperationalError"
