"""Opening a database, and every way that can fail said as one line.

A path is a SQLite file; anything with ``://`` is a SQLAlchemy URL. Whatever goes wrong — a
folder given as the file, a read-only file system, a full disk, a server that refuses the
connection, a missing database, an unknown scheme — becomes a :class:`StoreUnavailable` that
names the database (password masked), the cause and what to do. A write failing mid-run is
translated the same way by the engine's ``handle_error`` hook, so the search never sees a raw
driver error; it says whether the failure is one to wait out (``store.outage``).
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from pathlib import Path

from sqlalchemy import event, inspect
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.exc import ArgumentError, IntegrityError, NoSuchModuleError
from sqlmodel import SQLModel, create_engine

from store.errors import StoreUnavailable
from store.outage import is_transient

# Below this much free space a run would fail within its first writes: refuse before anything
# is paid for. SQLite's schema and a few hundred nodes fit well within it.
MIN_FREE_BYTES = 1 << 20

# A server that vanishes without closing its connections (a failover, a cable pulled) would
# otherwise hold a query in flight for the kernel's two hours: notice it within about 30 s, and
# so ride it out like any other outage (libpq's parameters; a URL's own values win).
PG_CONNECT_ARGS = {"connect_timeout": 10, "keepalives_idle": 10, "keepalives_interval": 5, "keepalives_count": 3,
                   "tcp_user_timeout": 30_000}

_FREE_SPACE = "free space on its file system"
_DISK_HEALTH = "check that its file system has free space and is healthy"
_WRITABLE = "make the file, its -wal and -shm files and their folder writable"
# (pattern in the driver's message, what to do), first match wins.
_HINTS = [
    (r"disk is full|no space left|disk quota", _FREE_SPACE),
    (r"disk i/o error", _DISK_HEALTH),
    (r"readonly database|read-only file system", _WRITABLE),
    (r"unable to open database file", "check that the path names a file in a folder you can write to"),
    (r"file is not a database|malformed", "it is not a reer database (or it is damaged): use another --db"),
    (r"database is locked", "another process holds it locked: stop it, or use another --db"),
    (r'database "[^"]*" does not exist', "create it (createdb NAME) or fix the URL"),
    (r"password authentication failed|role \"[^\"]*\" does not exist|no password supplied",
     "check the user and password in the URL"),
    (r"connection refused|could not connect|failed to resolve host|timeout expired|no route to host"
     r"|server closed the connection|terminating connection",
     "check that the database server is running and reachable at that host and port"),
]


def shown(db: str) -> str:
    """``db`` as it may be printed or logged: a URL's password masked."""
    if "://" not in db:
        return db
    try:
        return make_url(db).render_as_string(hide_password=True)
    except Exception:  # not a URL SQLAlchemy can read: print nothing that could hold a secret
        return db.split("://", 1)[0] + "://***"


def check(db: str) -> None:
    """StoreUnavailable unless ``db`` can be opened and written; creates nothing. For a SQLite
    path: its files and the folder it would go in; for a URL: the driver, the server, the
    database and the credentials. A run checks this before it asks an endpoint anything, and
    opens the store (creating it) only once the endpoint has answered."""
    if "://" not in db:
        _check_sqlite(db)
        return
    engine = engine_for(db)
    try:
        with engine.connect():
            pass
    finally:
        engine.dispose()


def prepare(db: str, create: bool = True) -> None:
    """Before a SQLite database is opened: its folder made (with ``create``; without, the file
    must exist) and its files checked, so that a failure is said as what it is."""
    if "://" in db:
        return
    if not create and not Path(db).expanduser().is_file():
        raise StoreUnavailable(db, "no such database", "give the --db of a run", resumable=False)
    _make_folder(db)
    _check_sqlite(db)


def open_engine(db: str, check_tables: bool = True) -> Engine:
    """An engine on ``db``, whose tables are checked to be reer's (StoreUnavailable otherwise)."""
    engine = engine_for(db)
    if not check_tables:
        return engine
    try:
        _check_tables(db, engine)
    except BaseException:
        engine.dispose()
        raise
    return engine


def open_read_only_engine(db: str) -> Engine:
    """An engine on ``db`` that cannot write: SQLite opened ``mode=ro`` (it still reads what a
    running worker commits to the WAL), PostgreSQL with read-only transactions. Its tables are
    checked to be reer's; nothing is created or migrated (StoreUnavailable otherwise)."""
    if "://" not in db:
        path = Path(db).expanduser()
        if not path.is_file():
            raise StoreUnavailable(db, "no such database", "give the --db of a run", resumable=False)
        engine = engine_for(f"sqlite:///file:{path.absolute()}?mode=ro&uri=true")
    else:
        engine = engine_for(db, connect_args=_pg_read_only_args(db)) if db.startswith("postgresql") else engine_for(db)
    try:
        _check_tables(shown(db), engine)
    except BaseException:
        engine.dispose()
        raise
    return engine


def engine_for(db: str, **kwargs) -> Engine:
    """An engine on ``db`` (``kwargs`` for ``create_engine``) whose every failure, at connect or
    later, is a StoreUnavailable."""
    if db.startswith("postgresql"):
        kwargs.setdefault("connect_args", _pg_connect_args(db))
    try:
        engine = create_engine(db if "://" in db else f"sqlite:///{Path(db).expanduser()}", **kwargs)
    except (NoSuchModuleError, ArgumentError) as exc:
        raise StoreUnavailable(shown(db), f"not a database URL reer can use ({_first_line(exc)})",
                               "give a SQLite file path, or a URL such as postgresql+psycopg://USER@HOST/DB") from exc
    except ImportError as exc:
        raise StoreUnavailable(shown(db), f"its driver is not installed ({exc})",
                               f"install the package that provides {exc.name!r} (for postgresql+psycopg: "
                               "pip install 'psycopg[binary]')") from exc
    if engine.dialect.name == "sqlite":
        event.listen(engine, "connect", _sqlite_pragmas)
    event.listen(engine, "handle_error", lambda ctx: _translate(db, ctx))
    return engine


def _pg_connect_args(db: str) -> dict:
    return {k: v for k, v in PG_CONNECT_ARGS.items() if k not in make_url(db).query}


def _pg_read_only_args(db: str) -> dict:
    """The connection's arguments with every transaction read-only, beside the URL's own
    ``options`` (a search_path, say): libpq takes one options string, so they are joined."""
    url = make_url(db)
    own = url.query.get("options", "")
    own = " ".join(own) if isinstance(own, tuple) else own
    url_less = url.difference_update_query(["options"]).render_as_string(hide_password=False)
    return {**_pg_connect_args(url_less), "options": f"{own} -c default_transaction_read_only=on".strip()}


def _make_folder(db: str) -> None:
    try:
        Path(db).expanduser().parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise StoreUnavailable(db, f"its folder cannot be created ({exc.strerror or exc})",
                               "give a path in a folder you can write to") from exc


def _check_sqlite(db: str) -> None:
    """Check a SQLite path before SQLite does (it says only "unable to open database file")."""
    path = Path(db).expanduser()
    if path.is_dir():
        raise StoreUnavailable(db, "it is a folder", f"give a file path, such as {path / 'run.db'}")
    for f in (path, Path(f"{path}-wal"), Path(f"{path}-shm")):
        if f.exists():
            _probe_writable(db, f)
    folder = next(p for p in path.absolute().parents if p.exists())  # its own, or where it would be made
    if not folder.is_dir():
        raise StoreUnavailable(db, f"{folder} is not a folder", "give a path in a folder you can write to")
    _probe_folder(db, folder)
    free = shutil.disk_usage(folder).free
    if free < MIN_FREE_BYTES:
        raise StoreUnavailable(db, f"its file system is full ({free // 1024} KiB free)",
                               "free space on it, or give a --db on another disk")


def _probe_writable(db: str, f: Path) -> None:
    # A real open for writing, not os.access: root passes access checks on files it still cannot
    # write (read-only mounts, immutable files), and SQLite then fails mid-run instead of now.
    try:
        os.close(os.open(f, os.O_WRONLY | os.O_APPEND))
    except OSError as exc:
        raise StoreUnavailable(db, f"{f.name} cannot be written ({exc.strerror or exc})",
                               _WRITABLE) from exc


def _probe_folder(db: str, folder: Path) -> None:
    # SQLite creates the -wal and -shm files beside the database as it goes.
    try:
        fd, probe = tempfile.mkstemp(prefix=".reer-probe-", dir=folder)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise StoreUnavailable(db, f"its folder {folder} cannot be written ({exc.strerror or exc})",
                               "give a path in a folder you can write to") from exc


def _unwritable(db: str) -> str | None:
    """Which of a SQLite database's files (or its folder) cannot be written now, and why. Asked
    with access() first: closing a descriptor opened on the database would drop the locks SQLite
    holds on it in this process, so a file is opened (to learn why) only where it cannot be."""
    path = Path(db).expanduser()
    for f in (path, Path(f"{path}-wal"), Path(f"{path}-shm"), path.parent):
        if not f.exists() or os.access(f, os.W_OK):
            continue
        try:
            os.close(os.open(f, os.O_RDONLY if f.is_dir() else os.O_WRONLY | os.O_APPEND))
        except OSError as exc:
            return f"{f.name if f != path.parent else 'its folder'} cannot be written ({exc.strerror or exc})"
        return f"{f.name if f != path.parent else 'its folder'} cannot be written"
    return None


def _check_tables(db: str, engine: Engine) -> None:
    """Tables of the same names but other columns (another program's, or a damaged database)
    would fail at the first write, after generations were paid for: refuse now."""
    found = inspect(engine)
    for table in SQLModel.metadata.sorted_tables:
        if not found.has_table(table.name):
            raise StoreUnavailable(shown(db), "it holds no reer run", "give the --db of a run", resumable=False)
        missing = {c.name for c in table.columns} - {c["name"] for c in found.get_columns(table.name)}
        if missing:
            raise StoreUnavailable(shown(db), f"its table {table.name!r} lacks the columns {sorted(missing)}",
                                   "it was not made by this version of reer: use another --db")


def _translate(db: str, ctx) -> None:
    """handle_error: a driver failure becomes StoreUnavailable; a UNIQUE violation stays what it
    is, for the store to report as the state error it means."""
    if isinstance(ctx.sqlalchemy_exception, IntegrityError):
        return
    cause = _first_line(ctx.original_exception)
    hint = next((h for pattern, h in _HINTS if re.search(pattern, cause, re.IGNORECASE)), None)
    if "://" not in db and hint in (_FREE_SPACE, _DISK_HEALTH, _WRITABLE):
        # SQLite says "disk I/O error" for a file that became unwritable under it: name the file
        unwritable = _unwritable(db)
        if unwritable is not None:
            cause, hint = f"{cause}; {unwritable}", _WRITABLE
        elif hint != _WRITABLE:
            free = shutil.disk_usage(Path(db).expanduser().parent).free
            cause += f"; {free // 1024} KiB free on its file system"
    transient = is_transient(ctx.original_exception, ctx.is_disconnect)
    raise StoreUnavailable(shown(db), cause, hint, transient=transient) from ctx.original_exception


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return re.sub(r"^connection failed: ", "", " ".join(text.split()))


def _sqlite_pragmas(dbapi_conn, _record) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")  # readers never block the writer; crash-safe commits
    cur.execute("PRAGMA synchronous=NORMAL")  # WAL + NORMAL is durable across process crashes
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA busy_timeout=10000")
    cur.close()
