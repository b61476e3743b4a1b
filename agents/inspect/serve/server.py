"""``reer serve --db DB``: a live, read-only view of a run in the browser.

    reer serve --db runs/x.db                          http://127.0.0.1:8080/
    reer serve --db URL --host 0.0.0.0 --token T       for others: open http://HOST:8080/?token=T

It reads the store and nothing else (opened read-only), so it follows a run while its workers
write, here or on other machines against the same PostgreSQL database. It binds 127.0.0.1; any
other ``--host`` requires ``--token`` (or env REER_SERVE_TOKEN). It prints ``REER_URL=<url>``
once it listens.
"""

from __future__ import annotations

import argparse
import os
import sys

from agents.errors import ConfigError
from agents.inspect.serve.app import Served, make_app
from agents.inspect.stored import add_db_option
from agents.options import add_price_options, prices_from_args
from scorer.listen import is_loopback, listen
from store import Store, StoreError, StoreUnavailable, shown

DEFAULT_PORT = 8080
DEFAULT_REFRESH_S = 5.0  # the overview's figures fetched again this often


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="reer serve", description="A live, read-only view of a run in the browser.")
    add_db_option(p)
    p.add_argument("--host", default="127.0.0.1", help="the address to listen on (127.0.0.1: this machine only)")
    p.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"the port ({DEFAULT_PORT}; 0: any free one)")
    p.add_argument("--token", default=os.environ.get("REER_SERVE_TOKEN"),
                   help="require this token (mandatory when --host is not loopback; env REER_SERVE_TOKEN)")
    p.add_argument("--refresh", type=float, default=DEFAULT_REFRESH_S, metavar="SECONDS",
                   help=f"how often the overview refreshes itself ({DEFAULT_REFRESH_S:g})")
    add_price_options(p)
    return p


def open_served(args: argparse.Namespace) -> Served:
    """The store, opened read-only, and its latest run; StoreError if it holds none."""
    store = Store.open_read_only(args.db)
    run_id = store.latest_run_id()
    if run_id is None:
        store.close()
        raise StoreUnavailable(shown(args.db), "it holds no run yet", "give the --db of a run", resumable=False)
    return Served(store, run_id, args.db, token=args.token or None, prices=prices_from_args(args),
                  refresh_s=args.refresh)


def main(argv: list[str] | None = None) -> int:
    import uvicorn

    p = build_parser()
    args = p.parse_args(argv)
    if not is_loopback(args.host) and not args.token:
        p.error(f"--host {args.host} shows the run beyond this machine: set --token (or REER_SERVE_TOKEN)")
    if args.refresh <= 0:
        p.error("--refresh takes a number of seconds above 0")
    try:
        served = open_served(args)
        sock, url = listen(args.host, args.port)
    except (StoreError, ConfigError, OSError) as exc:
        print(f"reer: error: {exc}", file=sys.stderr)
        return 2
    server = uvicorn.Server(uvicorn.Config(make_app(served), log_level="warning", access_log=False, lifespan="off"))
    print(f"REER_URL={url}", flush=True)
    print(f"reer serve: run {served.run_id} of {shown(args.db)} at {url}/ (Ctrl-C to stop)", file=sys.stderr,
          flush=True)
    try:
        server.run(sockets=[sock])
    finally:
        served.store.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
