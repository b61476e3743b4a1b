"""Reading a run from its store (status, show, report, export): the one ``--db`` option they
share, and the one way they open it: never creating a database, refusing one with no run."""

from __future__ import annotations

import argparse

from store import Store, StoreUnavailable, shown


def add_db_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("--db", required=True, help="the run's database (SQLite path or SQLAlchemy URL)")


def open_run(db: str) -> tuple[Store, int]:
    """The store and its run; StoreUnavailable (a StoreError) if there is none to read."""
    store = Store.open(db, create=False)
    run_id = store.latest_run_id()
    if run_id is None:
        store.close()
        raise StoreUnavailable(shown(db), "it holds no run yet", "give the --db of a run", resumable=False)
    return store, run_id
