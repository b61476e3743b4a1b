"""The paper's size (not in CI): DeepWriting records through one PostgreSQL store, K workers,
two of them SIGKILLed mid-run and restarted, ``status`` polled throughout; then export and report.

    .venv/bin/python bench/deepwriting.py                  # 20,000 records, K = 4
    .venv/bin/python bench/deepwriting.py --records 1000   # a quick run

Each record has a ~3,000-character answer; the fake generator (tests/support/fake_openai.py,
``draft_chars``) writes ~30,000-character drafts (~30 segments) and rewrites as long as their
segment; default search (10 steps, 2 candidates), the instant fake scorer. Each worker is a real
``python -m agents.run`` (bench/scale.py's command). Printed, and written to
bench/results/deepwriting.json: wall time, candidate nodes/s, each process's peak RSS, the
database's size, ``reer status`` latency (a fresh process every --poll-s seconds: median, max),
the largest event-loop lag a worker saw, export (each format) and report time and peak RSS,
records lost, and generations paid for and not stored against the killed workers' in-flight
requests. Targets: run < 30 min, every process < 2 GB, status < 1 s, export and report < 1 GB,
0 records lost, wasted generations <= in-flight requests of the killed workers.
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from datetime import datetime, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from agents.inspect.status import snapshot  # noqa: E402
from bench.record import git, machine  # noqa: E402
from bench.scale import EXPANSIONS, rate, worker_cmd  # noqa: E402
from store import Store  # noqa: E402
from tests.support import runner as R  # noqa: E402
from tests.support.fake_openai import FakeOpenAI  # noqa: E402
from tests.support.fake_scorer import FakeScorer  # noqa: E402
from tests.support.pg import pg_schema, q  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results" / "deepwriting.json"
ANSWER_CHARS = 3000
DRAFT_CHARS = 30_000
# Runs a reading command and says its peak RSS. VmHWM, not getrusage: Linux carries ru_maxrss
# over exec, so that would be the bench's own peak.
MEASURED = ("import runpy, sys; sys.argv = sys.argv[1:]\n"
            "try: runpy.run_module(sys.argv[0], run_name='__main__')\n"
            "except SystemExit as e: code = e.code\n"
            "else: code = 0\n"
            "hwm = [x for x in open('/proc/self/status') if x.startswith('VmHWM:')][0].split()[1]\n"
            "print(f'PEAK_RSS_KB={hwm}', file=sys.stderr)\n"
            "sys.exit(code)")


def answer(i: int) -> str:
    para = (f"Piece {i}. The morning opened on the harbour like a letter nobody had finished, and the boats "
            "waited for a wind that did not come. ")
    return "\n\n".join(para * 3 for _ in range(ANSWER_CHARS // (len(para) * 3) + 1))[:ANSWER_CHARS]


def measured(module: str, *args: str) -> dict:
    """Run ``python -m module args`` as a user would; its wall time and peak RSS."""
    t0 = time.monotonic()
    p = subprocess.run([sys.executable, "-c", MEASURED, module, *args], cwd=R.ROOT, env=R.env(None),
                       capture_output=True, text=True)
    wall = time.monotonic() - t0
    if p.returncode != 0:
        raise SystemExit(f"{module} failed ({p.returncode}): {p.stderr[-2000:]}")
    kb = int(re.search(r"PEAK_RSS_KB=(\d+)", p.stderr).group(1))
    return {"s": round(wall, 2), "peak_rss_mb": round(kb / 1024, 1)}


def peak_rss_mb(pid: int) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


class Watch:
    """The workers' peak RSS (read every second, so a killed one's is kept) and ``status`` run
    every ``poll_s`` seconds in a fresh process, timed."""

    def __init__(self, url: str, poll_s: float):
        self.url, self.poll_s = url, poll_s
        self.store: Store | None = None
        self.snapshot_s: list[float] = []
        self.procs: dict[str, subprocess.Popen] = {}
        self.peaks: dict[str, float] = {}
        self.status_s: list[float] = []
        self.status_rss: list[float] = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._loop, daemon=True)

    def _loop(self) -> None:
        next_poll = time.monotonic()
        while not self.stop.wait(1.0):
            for name, p in list(self.procs.items()):
                if (mb := peak_rss_mb(p.pid)) is not None:
                    self.peaks[name] = max(self.peaks.get(name, 0.0), mb)
            if time.monotonic() >= next_poll and done_count(self.url, "record") > 0:  # the run exists
                next_poll += self.poll_s
                m = measured("agents.inspect.status", "--db", self.url, "--json")
                self.status_s.append(m["s"])
                self.status_rss.append(m["peak_rss_mb"])
                self.store = self.store or Store.open(self.url, create=False)
                t0 = time.monotonic()
                snapshot(self.store, self.store.latest_run_id())
                self.snapshot_s.append(time.monotonic() - t0)


def done_count(url: str, table: str = "record where status in ('done', 'failed', 'skipped')") -> int:
    try:
        return q(url, f"select count(*) from {table}")[0][0]
    except Exception:
        return 0


def run_workers(a, url: str, tmp: Path, fake, scorer, watch: Watch) -> dict:
    inp = R.write_input(tmp / "in.jsonl", [{"id": f"r{i}", "question": f"Write piece {i} about a harbour.",
                                            "solution": answer(i)} for i in range(a.records)])
    cmd = lambda name: worker_cmd(fake, scorer, inp, url, tmp / f"{name}.jsonl", a, "--lease-s",  # noqa: E731
                                  str(a.lease_s))
    for i in range(a.workers):
        watch.procs[f"w{i}"] = R.start(cmd(f"w{i}"))
    held = 0
    for k, at in enumerate((a.records // 3, 2 * a.records // 3)[: a.kill]):
        while done_count(url) < at:
            time.sleep(1)
        victim = watch.procs[f"w{k}"]
        R.kill(victim)
        [(wid,)] = q(url, f"select id from worker where name like 'pid {victim.pid} %'")
        held += q(url, f"select count(*) from record where worker_id = {wid} and status = 'running'")[0][0]
        print(f"killed w{k} (pid {victim.pid}) at {at} records finished; it held {held} records", flush=True)
        watch.procs[f"w{k}-restarted"] = R.start(cmd(f"w{k}-restarted"))
    lags = []
    for name, p in watch.procs.items():
        if p.returncode is not None:
            continue  # the killed ones
        out, err = p.communicate(timeout=6 * 3600)
        if p.returncode != 0:
            raise SystemExit(f"worker {name} failed ({p.returncode}): {err[-2000:]}")
        lags += [float(x) for x in re.findall(r"event loop lag: max (\d+) ms", out + err)]
    return {"killed_held": held, "loop_lag_max_ms": max(lags) if lags else None}


def db_mb(url: str) -> float:
    [(size,)] = q(url, "select sum(pg_total_relation_size(c.oid)) from pg_class c join pg_namespace n "
                       "on n.oid = c.relnamespace where n.nspname = current_schema() and c.relkind = 'r'")
    return round(float(size) / 2**20, 1)


def reading(url: str, tmp: Path) -> dict:
    out = {}
    for fmt, path in (("jsonl", tmp / "x.jsonl"), ("parquet", tmp / "x.parquet"), ("hf", tmp / "ds")):
        out[f"export_{fmt}"] = measured("agents.inspect.export", "--db", url, "--out", str(path), "--format", fmt)
    out["report"] = measured("agents.inspect.report", "--db", url, "--out", str(tmp / "report"))
    key = q(url, "select key from record where status = 'done' order by position desc limit 1")[0][0]
    out["show"] = measured("agents.inspect.show", "--db", url, "--record", key, "--json")
    return out


def figures(a, url: str, tmp: Path) -> dict:
    with FakeScorer() as scorer, FakeOpenAI(delay_s=a.latency, draft_chars=DRAFT_CHARS, keep_prompts=False) as fake:
        watch = Watch(url, a.poll_s)
        watch.thread.start()
        t0 = time.monotonic()
        try:
            run = run_workers(a, url, tmp, fake, scorer, watch)
        finally:
            watch.stop.set()
            watch.thread.join()
            if watch.store is not None:
                watch.store.close()
        wall = time.monotonic() - t0
        generated = fake.choices_generated("draft") + fake.choices_generated("edit")
    counts = dict(q(url, "select status, count(*) from record group by status"))
    [(stored,)] = q(url, "select count(*) from node")
    cands, seconds = rate(url)
    return {
        "records": a.records, "workers": a.workers, "killed": a.kill, "concurrency": a.concurrency,
        "wall_s": round(wall, 1), "candidates": cands, "candidates_per_s": round(cands / seconds, 1),
        "peak_rss_mb": {k: round(v, 1) for k, v in watch.peaks.items()}, "db_mb": db_mb(url),
        "status_s": {"polls": len(watch.status_s), "median": statistics.median(watch.status_s or [0]),
                     "max": max(watch.status_s or [0]), "peak_rss_mb": max(watch.status_rss or [0]),
                     "queries_median": round(statistics.median(watch.snapshot_s or [0]), 3),
                     "queries_max": round(max(watch.snapshot_s or [0]), 3)},
        "loop_lag_max_ms": run["loop_lag_max_ms"],
        "statuses": counts, "lost": a.records - sum(counts.get(s, 0) for s in ("done", "failed", "skipped")),
        "generated_not_stored": generated - stored, "killed_held": run["killed_held"],
        "killed_in_flight_max": a.kill * a.concurrency * EXPANSIONS,
        **reading(url, tmp),
    }


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--records", type=int, default=20_000)
    p.add_argument("--workers", type=int, default=4)
    p.add_argument("--kill", type=int, default=2, help="workers SIGKILLed mid-run and restarted")
    p.add_argument("--concurrency", type=int, default=16, help="records in flight per worker")
    p.add_argument("--latency", type=float, default=0.0, help="seconds per generator request")
    p.add_argument("--lease-s", type=float, default=15.0)
    p.add_argument("--poll-s", type=float, default=10.0, help="seconds between two status runs")
    p.add_argument("--note", default="", help="said in the results file (why a run is smaller than the target)")
    a = p.parse_args()
    a.max_steps = 10  # the default search, as bench/scale.py's command needs it said
    tmp = Path(tempfile.mkdtemp(prefix="reer-deepwriting-"))
    commit = {"commit": git("rev-parse", "--short", "HEAD"),  # what ran, whatever changes meanwhile
              "dirty": bool(git("status", "--porcelain", "--untracked-files=no"))}
    print(f"{a.records} DeepWriting records (answers {ANSWER_CHARS} chars, drafts ~{DRAFT_CHARS}), 10 steps x "
          f"{EXPANSIONS} candidates, {a.workers} workers x {a.concurrency} in flight on PostgreSQL, {a.kill} "
          f"SIGKILLed and restarted, status every {a.poll_s:g} s", flush=True)
    with pg_schema("deepwriting") as url:
        f = figures(a, url, tmp)
    rss = max(f["peak_rss_mb"].values())
    reading_rss = max(f[k]["peak_rss_mb"] for k in ("export_jsonl", "export_parquet", "export_hf", "report"))
    lines = [
        f"wall {f['wall_s']:.0f} s (target < 1800 at 20,000), {f['candidates']} candidates, "
        f"{f['candidates_per_s']} candidates/s, database {f['db_mb']} MB",
        "peak RSS per worker (MB): " + ", ".join(f"{k} {v:.0f}" for k, v in f["peak_rss_mb"].items())
        + f" (target < 2048; largest {rss:.0f})",
        f"status: {f['status_s']['polls']} polls, median {f['status_s']['median']:.2f} s, max "
        f"{f['status_s']['max']:.2f} s (a fresh process each: start-up included; target < 1 s), peak RSS "
        f"{f['status_s']['peak_rss_mb']} MB; its queries alone: median {f['status_s']['queries_median']:.3f} s, "
        f"max {f['status_s']['queries_max']:.3f} s",
        f"largest event-loop lag in a worker: {f['loop_lag_max_ms']} ms",
        *(f"{k}: {f[k]['s']:.1f} s, peak RSS {f[k]['peak_rss_mb']:.0f} MB"
          for k in ("export_jsonl", "export_parquet", "export_hf", "report", "show")),
        f"reading peak RSS {reading_rss:.0f} MB (target < 1024)",
        f"records lost {f['lost']} (target 0; {f['statuses']}); generations paid for and not stored "
        f"{f['generated_not_stored']} (target <= the killed workers' in-flight requests, at most "
        f"{f['killed_in_flight_max']}; they held {f['killed_held']} records)",
    ]
    print("\n".join(lines), flush=True)
    RESULTS.write_text(json.dumps({
        "command": " ".join(sys.argv), **commit, "date": datetime.now(timezone.utc).isoformat(timespec="seconds"), "machine": machine(),
        "note": a.note, "figures": f, "output": lines}, indent=2, ensure_ascii=False, default=float) + "\n")
    print(f"-> {RESULTS.relative_to(R.ROOT)}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
