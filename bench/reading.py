"""The reading commands on a store of the paper's size (not in CI): ``status``, ``show`` and
``export --format hf`` / ``parquet`` at 20,000 DeepWriting records, on SQLite and PostgreSQL,
with no run writing meanwhile (bench/deepwriting.py measures them during a run).

    .venv/bin/python bench/reading.py                               # 20,000 records, this tree
    .venv/bin/python bench/reading.py --tree OLD --label before     # the same of another checkout
    .venv/bin/python bench/reading.py --records 2000 --exports      # and export's time and memory

The store is filled in bulk (bench/fill.py) by the tree measured, so each tree reads a store of
its own schema. Each command is a fresh process, as a user runs it: wall time (median of
--repeat) and peak RSS; ``status``'s queries alone are timed in one process. Written under
--label into bench/results/reading-N.json (other labels kept), so a before and an after sit
side by side.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.deepwriting import MEASURED  # noqa: E402
from bench.record import git, machine  # noqa: E402
from tests.support.pg import PG_URL  # noqa: E402

FILL = "import sys; from bench.fill import fill; fill(sys.argv[1], int(sys.argv[2]))[0].close()"
QUERIES = ("import sys, time, statistics; from agents.inspect.stored import open_run; "
           "from agents.inspect.status import snapshot; st, run = open_run(sys.argv[1]); ts = []\n"
           "for _ in range(5):\n    t = time.perf_counter(); snapshot(st, run); ts.append(time.perf_counter() - t)\n"
           "print(statistics.median(ts))")


def py(tree: Path, *args: str) -> subprocess.CompletedProcess:
    env = {"PYTHONPATH": str(tree), "HF_HUB_OFFLINE": "1", "PATH": "/usr/bin:/bin"}
    p = subprocess.run([sys.executable, *args], cwd=tree, env=env, capture_output=True, text=True)
    if p.returncode != 0:
        raise SystemExit(f"{args[:3]} failed ({p.returncode}): {p.stderr[-2000:]}")
    return p


def measured(tree: Path, module: str, *args: str) -> dict:
    """Wall time, the CPU time it used (user + system: what the machine's load does not
    stretch as much) and peak RSS of one fresh process."""
    t0, c0 = time.monotonic(), resource.getrusage(resource.RUSAGE_CHILDREN)
    p = py(tree, "-c", MEASURED, module, *args)
    c1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    kb = int(p.stderr.rsplit("PEAK_RSS_KB=", 1)[1].split()[0])
    return {"s": round(time.monotonic() - t0, 2), "cpu_s": round(c1.ru_utime + c1.ru_stime - c0.ru_utime - c0.ru_stime, 2),
            "peak_rss_mb": round(kb / 1024, 1)}


def repeated(tree: Path, n: int, module: str, *args: str) -> dict:
    runs = [measured(tree, module, *args) for _ in range(n)]
    return {"median_s": statistics.median(r["s"] for r in runs), "max_s": max(r["s"] for r in runs),
            "median_cpu_s": statistics.median(r["cpu_s"] for r in runs),
            "peak_rss_mb": max(r["peak_rss_mb"] for r in runs)}


def backend(tree: Path, db: str, records: int, repeat: int, tmp: Path, exports: bool) -> dict:
    t0 = time.monotonic()
    py(tree, "-c", FILL, db, str(records))
    out = {"fill_s": round(time.monotonic() - t0, 1)}
    measured(tree, "agents.inspect.status", "--db", db, "--json")  # a first open migrates nothing, warms the cache
    out["status"] = repeated(tree, repeat, "agents.inspect.status", "--db", db, "--json")
    out["status_queries_s"] = round(float(py(tree, "-c", QUERIES, db).stdout.split()[-1]), 4)
    out["show"] = repeated(tree, repeat, "agents.inspect.show", "--db", db, "--record", f"r{records // 2}")
    if exports:
        for fmt, name in (("hf", "ds"), ("parquet", "x.parquet")):
            out[f"export_{fmt}"] = measured(tree, "agents.inspect.export", "--db", db, "--out", str(tmp / name),
                                            "--format", fmt)
    return out


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--records", type=int, default=20_000)
    p.add_argument("--tree", type=Path, default=ROOT, help="the checkout measured (default: this one)")
    p.add_argument("--label", default="after")
    p.add_argument("--repeat", type=int, default=5, help="fresh processes per command")
    p.add_argument("--exports", action="store_true", help="also export (hf, parquet) on PostgreSQL")
    p.add_argument("--note", default="")
    a = p.parse_args()
    tree = a.tree.resolve()
    tmp = Path(tempfile.mkdtemp(prefix="reer-reading-"))
    schema = f"reading_{a.label}_{a.records}"
    with __import__("sqlalchemy").create_engine(PG_URL).begin() as c:
        c.exec_driver_sql(f"drop schema if exists {schema} cascade")
        c.exec_driver_sql(f"create schema {schema}")
    try:
        figures = {"sqlite": backend(tree, str(tmp / "x.db"), a.records, a.repeat, tmp, exports=False),
                   "postgresql": backend(tree, f"{PG_URL}?options=-csearch_path%3D{schema}", a.records, a.repeat,
                                         tmp, exports=a.exports)}
    finally:
        with __import__("sqlalchemy").create_engine(PG_URL).begin() as c:
            c.exec_driver_sql(f"drop schema if exists {schema} cascade")
        subprocess.run(["rm", "-rf", str(tmp)])
    results = ROOT / "bench" / "results" / f"reading-{a.records}.json"
    data = json.loads(results.read_text()) if results.exists() else {"command": "bench/reading.py", "runs": {}}
    data["runs"][a.label] = {
        "command": " ".join(sys.argv), "tree": str(tree),
        "commit": subprocess.run(["git", "-C", str(tree), "rev-parse", "--short", "HEAD"], capture_output=True,
                                 text=True).stdout.strip() or "(not a checkout)",
        "bench_commit": git("rev-parse", "--short", "HEAD"),
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"), "machine": machine(), "note": a.note,
        "figures": figures}
    results.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n")
    print(json.dumps(figures, indent=2))
    print(f"-> {results.relative_to(ROOT)}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
