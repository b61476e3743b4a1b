"""Soak test (not in CI): many records against the fault-injecting server, with random SIGKILLs,
disks filling up under the store, and a scorer under a flood of hostile requests.

    .venv/bin/python bench/soak.py --records 500 --fault-rate 0.2 --kills 8
    .venv/bin/python bench/soak.py --records 300 --kills 4 --store-faults 4 --hostile-scorer

Prints records done / failed / skipped / lost (must be 0), steps lost across kills and full
disks (must be 0), how each full disk ended (must be the one-line store error, exit 2), the
wasted-request ratio (generated outputs that never reached the store, over all outputs) and,
with ``--hostile-scorer``, what the flood got and the scorer's memory. Uses a tiny trained
Llama as the scorer, so it measures the machinery, not a model. ``--store-faults`` puts the
database on a tmpfs of its own, so it needs root.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import random
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.support import disk  # noqa: E402
from tests.support import runner as R  # noqa: E402
from tests.support.fake_openai import FakeOpenAI  # noqa: E402
from tests.support.hostile import KINDS, hostile, rss_mb, valid_large  # noqa: E402
from tests.support.tiny_models import save_tiny  # noqa: E402

HOSTILE_MB = 8  # the scorer's body limit under the flood


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--records", type=int, default=500)
    p.add_argument("--fault-rate", type=float, default=0.2)
    p.add_argument("--kills", type=int, default=8)
    p.add_argument("--store-faults", type=int, default=0, help="times the database's disk fills up mid-run")
    p.add_argument("--hostile-scorer", action="store_true",
                   help="serve the scorer apart and flood it with oversized, slow and malformed requests")
    p.add_argument("--concurrency", type=int, default=32)
    p.add_argument("--max-steps", type=int, default=3)
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args()
    rng = random.Random(a.seed)
    tmp = Path(tempfile.mkdtemp(prefix="reer-soak-"))
    model = save_tiny("llama", tmp / "model")
    records = [{**R.RECORDS[i % len(R.RECORDS)], "id": f"r{i}"} for i in range(a.records)]
    inp = R.write_input(tmp / "in.jsonl", records)
    out = tmp / "soak.jsonl"
    with contextlib.ExitStack() as stack:
        if a.store_faults and not disk.can_mount():
            sys.exit("--store-faults puts the database on a tmpfs of its own: run as root")
        store_dir = stack.enter_context(disk.tmpfs(tmp / "store", "512m")) if a.store_faults else tmp
        db = store_dir / "soak.db"
        fake = stack.enter_context(FakeOpenAI(fault_rate=a.fault_rate, hang_s=3.0, seed=a.seed))
        extra: list[str] = []
        flood = None
        if a.hostile_scorer:
            scorer, url = _start_scorer(model)
            stack.callback(_stop, scorer)
            flood = _Flood(url, scorer.pid, rng)
            stack.callback(flood.stop)
            extra = ["--scorer-url", url]
        cmd = R.run_cmd(fake.url, inp, db, out, model, "--max-steps", str(a.max_steps), "--concurrency",
                        str(a.concurrency), "--timeout", "2", "--max-retries", "4", "--draft-attempts", "2", *extra)
        t0 = time.monotonic()
        events = ["kill"] * a.kills + ["full"] * a.store_faults
        rng.shuffle(events)
        lost_steps, store_stops, applied = 0, collections.Counter(), collections.Counter()
        while True:
            proc = R.start(cmd)
            if events:
                time.sleep(rng.uniform(4.0, 15.0))
                if proc.poll() is None:
                    event = events.pop()
                    applied[event] += 1
                    before = set(R.query(db, "select record_id, step, kept from step"))
                    if event == "kill":
                        R.kill(proc)
                    else:
                        store_stops[_fill_until_stopped(proc, store_dir)] += 1
                    lost_steps += len(before - set(R.query(db, "select record_id, step, kept from step")))
                    print(f"{event}: {len(before)} steps stored; {len(events)} events left", flush=True)
                    continue
            _, stderr = proc.communicate()
            if proc.returncode in (0, 1):
                break
            print(f"run ended with {proc.returncode} ({stderr.strip()[-300:]}); resuming", flush=True)
        wall = time.monotonic() - t0
        generated = fake.choices_generated("edit") + fake.choices_generated("draft")
        injected = len(fake.injected)
        flood_report = flood.report() if flood else None
        statuses = dict(R.query(db, "select status, count(*) from record group by status"))
        stored = R.query(db, "select count(*) from node")[0][0]
        errors = R.query(db, "select error, count(*) from record where error is not null group by 1 order by 2 desc")
    done, failed, skipped = (statuses.get(s, 0) for s in ("done", "failed", "skipped"))
    lost = a.records - done - failed - skipped
    print(f"records {a.records}: done {done}, failed {failed}, skipped {skipped}, lost {lost}")
    print(f"kills {applied['kill']}, disks filled {applied['full']}, steps lost {lost_steps}, "
          f"faults injected {injected}")
    if a.store_faults:
        print("full disks ended: " + ", ".join(f"{n} x {how}" for how, n in store_stops.most_common()))
    print(f"outputs generated {generated}, stored {stored}, wasted {max(0, generated - stored)} "
          f"({max(0, generated - stored) / max(generated, 1):.1%})")
    for error, n in errors[:5]:
        print(f"  {n} x {error[:160]}")
    if flood_report:
        print(flood_report)
    print(f"wall time {wall:.0f} s; output lines {len(R.read_jsonl(out))}")
    clean = set(store_stops) <= {"one-line store error, exit 2"}
    return 0 if lost == 0 and lost_steps == 0 and clean else 1


def _fill_until_stopped(proc, folder: Path) -> str:
    """Fill the database's disk, wait for the run to stop, make room again; how it stopped."""
    filler = disk.fill(folder)
    try:
        _, stderr = proc.communicate(timeout=300)
    except subprocess.TimeoutExpired:
        R.kill(proc)
        return "still running after 300 s (killed)"
    finally:
        filler.unlink()
    lines = stderr.strip().splitlines()
    if proc.returncode == 2 and len(lines) == 1 and lines[0].startswith("reer: error: database "):
        return "one-line store error, exit 2"
    return f"exit {proc.returncode}: {lines[-1][:200] if lines else 'no message'}"


def _start_scorer(model: Path):
    cmd = [sys.executable, "-m", "scorer.server", "--model", str(model), "--threads", "1",
           "--max-body-mb", str(HOSTILE_MB), "--read-timeout-s", "5"]
    proc = subprocess.Popen(cmd, cwd=R.ROOT, env=R.env(None), stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                            text=True)
    url = proc.stdout.readline().strip().removeprefix("REER_URL=")
    if not R.wait_for(lambda: httpx.get(f"{url}/health").status_code == 200, timeout=120):
        sys.exit("the scorer did not start")
    return proc, url


def _stop(proc) -> None:
    proc.terminate()
    proc.wait(timeout=30)


class _Flood:
    """Hostile requests, a few at a time, for as long as the soak runs."""

    def __init__(self, url: str, pid: int, rng: random.Random, parallel: int = 6):
        self.url, self.pid, self.rng = url, pid, rng
        self.statuses: collections.Counter[tuple[str, int]] = collections.Counter()
        self.base_mb = rss_mb(self.pid)[0]
        self.peak_mb = 0
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run, daemon=True) for _ in range(parallel)]
        for t in self._threads:
            t.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            kind = self.rng.choice([*KINDS, "valid"])
            try:
                status = valid_large(self.url, HOSTILE_MB - 1) if kind == "valid" else hostile(self.url, kind, HOSTILE_MB)
            except Exception:  # the scorer not up yet, or gone at the end
                status = -1
            self.statuses[(kind, status)] += 1
            self.peak_mb = max(self.peak_mb, rss_mb(self.pid)[1])

    def stop(self) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(timeout=120)

    def report(self) -> str:
        self.stop()
        got = ", ".join(f"{kind} {status}: {n}" for (kind, status), n in sorted(self.statuses.items()))
        return (f"hostile requests {sum(self.statuses.values())} ({got}); scorer memory {self.base_mb} MiB at "
                f"the start, {self.peak_mb} MiB at its peak, {rss_mb(self.pid)[0]} MiB at the end")


if __name__ == "__main__":
    sys.exit(main())
