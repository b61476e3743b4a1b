"""``reer serve`` at the paper's size: each page and its JSON timed against a store of 20,000
records (not in CI).

    .venv/bin/python bench/serve.py                    # 20,000 records, a fresh store
    .venv/bin/python bench/serve.py --records 1000     # a quick look
    .venv/bin/python bench/serve.py --db runs/x.db     # a store filled before (kept)

The store is filled through the Store as workers write it (tests/support/shaped.py): each
record a 3,000-character answer, a 6,000-character draft, 5 steps of two candidates, the final
thinking; the last three failed, skipped, running. Then ``python -m agents.inspect.serve`` runs
on it and each URL is fetched --repeat times over HTTP (the first fetch of each counted too: no
warm-up is left out). Printed, and written to bench/results/serve.json: the fill's time and the
database's size, and per URL the median and the slowest fetch. Target: every page < 1 s.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from datetime import datetime, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.record import git, machine  # noqa: E402
from tests.support import runner as R  # noqa: E402
from tests.support.shaped import shaped_run  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results" / "serve.json"


def urls(records: int) -> list[str]:
    mid = f"r{records // 2}"
    return ["/", "/api/overview", "/records", "/api/records", "/records?sort=gain&desc=1",
            "/records?sort=final", "/records?sort=steps&desc=1", f"/records?page={records // 50}",
            "/records?status=failed", "/records?lang=en&sort=gain&desc=1", f"/records?q=piece+{records - 5}",
            "/records?status=failed&reason=3+requests+failed+for+good%3B+last%3A+HTTP+N",
            f"/records/{mid}", f"/api/records/{mid}"]


def fetch(url: str) -> float:
    t0 = time.perf_counter()
    with urllib.request.urlopen(url, timeout=60) as r:
        r.read()
        assert r.status == 200, url
    return time.perf_counter() - t0


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--records", type=int, default=20_000)
    p.add_argument("--db", default=None, help="a store filled before (by this script); else a fresh one")
    p.add_argument("--repeat", type=int, default=5)
    args = p.parse_args()
    tmp = tempfile.TemporaryDirectory()
    db = args.db or str(Path(tmp.name) / "serve.db")
    fill_s = None
    if not Path(db).exists():
        t0 = time.monotonic()
        st, _ = shaped_run(db, records=args.records, steps=5, draft_chars=6000, answer_chars=3000)
        st.close()
        fill_s = round(time.monotonic() - t0, 1)
        print(f"filled {args.records} records in {fill_s} s", flush=True)
    proc = subprocess.Popen([sys.executable, "-m", "agents.inspect.serve", "--db", db, "--port", "0"], cwd=R.ROOT,
                            env=R.env(None), stdout=subprocess.PIPE, text=True)
    try:
        base = proc.stdout.readline().split("=", 1)[1].strip()
        pages = {}
        for path in urls(args.records):
            times = [fetch(base + path) for _ in range(args.repeat)]
            pages[path] = {"median_s": round(statistics.median(times), 4), "max_s": round(max(times), 4)}
            print(f"{path}: median {pages[path]['median_s']:.3f} s, max {pages[path]['max_s']:.3f} s", flush=True)
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    slowest = max(v["max_s"] for v in pages.values())
    figures = {"records": args.records, "db_mb": round(Path(db).stat().st_size / 2**20, 1), "fill_s": fill_s,
               "repeat": args.repeat, "pages": pages, "slowest_s": slowest, "target_s": 1.0}
    out = {"command": "bench/serve.py " + " ".join(sys.argv[1:]), "commit": git("rev-parse", "--short", "HEAD"),
           "dirty": bool(git("status", "--porcelain", "--untracked-files=no")),
           "date": datetime.now(timezone.utc).isoformat(timespec="seconds"), "machine": machine(), "figures": figures}
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps(out, indent=2) + "\n")
    print(f"slowest page {slowest:.3f} s (target < 1 s); wrote {RESULTS}")
    return 0 if slowest < 1.0 else 1


if __name__ == "__main__":
    sys.exit(main())
