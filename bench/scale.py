"""Scale-out benchmark (not in CI): K workers sharing one run on this machine's PostgreSQL.

    .venv/bin/python bench/scale.py                      # K = 1, 2, 4; 400 records
    .venv/bin/python bench/scale.py --workers 1 2 --records 100

Each worker is a real ``python -m agents.run`` process on the same input and --db URL, against
one loopback fake generator that answers after ``--latency`` seconds and an instant fake
scorer, so the generator is the bound and K workers should go K times as fast. Printed:

- candidate nodes/s for each K (from the store's timestamps: first node to last record
  finished, so process start-up is left out), and its ratio to K x one worker's (target 0.8);
- claims/s of the lease query alone (``Store.claim``, one record per claim, 1 and 4 claimers
  each finishing what it claimed, over the time spent claiming);
- one worker ``kill -9``ed mid-run: records lost (target 0), and the generations paid for but
  not stored (the killed worker's in-flight requests at most: nothing stored is generated again).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from store import RecordIn, Store  # noqa: E402
from tests.support import runner as R  # noqa: E402
from tests.support.fake_openai import FakeOpenAI  # noqa: E402
from tests.support.fake_scorer import FakeScorer  # noqa: E402
from tests.support.pg import count, pg_schema, q  # noqa: E402

EXPANSIONS = 2


def records(n: int) -> list[dict]:
    return [{**R.RECORDS[i % len(R.RECORDS)], "id": f"r{i}"} for i in range(n)]


def worker_cmd(fake, scorer, inp: Path, url: str, out: Path, a, *extra: str) -> list[str]:
    return R.run_cmd(fake.url, inp, url, out, "fake", "--scorer-url", scorer.url, "--max-steps", str(a.max_steps),
                     "--concurrency", str(a.concurrency), "--timeout", "60", *extra)


def rate(url: str) -> tuple[int, float]:
    [(cands, first, last)] = q(url, "select (select count(*) from node where kind = 'candidate'), "
                                    "(select min(created_at) from node), (select max(updated_at) from record)")
    return cands, (last - first).total_seconds()


def workers(k: int, tmp: Path, a, fake, scorer) -> tuple[int, float]:
    inp = R.write_input(tmp / "in.jsonl", records(a.records))
    with pg_schema("scale") as url:
        procs = [R.start(worker_cmd(fake, scorer, inp, url, tmp / f"k{k}-w{i}.jsonl", a)) for i in range(k)]
        for p in procs:
            _, err = p.communicate(timeout=3600)
            if p.returncode != 0:
                raise SystemExit(f"a worker failed ({p.returncode}): {err[-2000:]}")
        [(done,)] = q(url, "select count(*) from record where status = 'done'")
        assert done == a.records, done
        return rate(url)


def claims_per_s(n_records: int, claimers: int, seconds: float = 5.0) -> float:
    """Claims per second of time spent claiming, each claimer finishing what it claimed before
    its next claim (as a worker does: the records held stay few)."""
    with pg_schema("claims") as url:
        recs = [RecordIn(key=str(i), position=i, question="q", answer="a", lang="en") for i in range(n_records)]
        stores = [Store.open(url) for _ in range(claimers)]
        run = stores[0].begin_run({}, "in", recs, lease_s=600).run_id
        for st in stores[1:]:
            st.begin_run({}, "in", recs, lease_s=600)
        counts, claiming = [0] * claimers, [0.0] * claimers
        stop = time.monotonic() + seconds

        def claim(i: int) -> None:
            while time.monotonic() < stop:
                t0 = time.monotonic()
                got = stores[i].claim(run, 1)
                claiming[i] += time.monotonic() - t0
                if not got:
                    return
                counts[i] += 1
                stores[i].finish_record(got[0].record.id, "t", 1.0)

        threads = [threading.Thread(target=claim, args=(i,)) for i in range(claimers)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        for st in stores:
            st.close()
        return sum(counts) / (sum(claiming) / claimers)


def kill_one(tmp: Path, a, scorer) -> dict:
    inp = R.write_input(tmp / "in.jsonl", records(a.records))
    lease = ["--lease-s", "5"]
    with pg_schema("kill") as url, FakeOpenAI(delay_s=a.latency) as fake:
        procs = [R.start(worker_cmd(fake, scorer, inp, url, tmp / f"kill-w{i}.jsonl", a, *lease)) for i in range(2)]
        while count(url, "step") < a.records // 4:
            time.sleep(0.5)
        R.kill(procs[0])
        [(victim,)] = q(url, "select id from worker order by id limit 1")
        [(held,)] = q(url, f"select count(*) from record where worker_id = {victim} and status = 'running'")
        _, err = procs[1].communicate(timeout=3600)
        if procs[1].returncode != 0:
            raise SystemExit(f"the surviving worker failed: {err[-2000:]}")
        [(done,)] = q(url, "select count(*) from record where status = 'done'")
        [(stored,)] = q(url, "select count(*) from node")
        generated = fake.choices_generated("draft") + fake.choices_generated("edit")
        return {"records": a.records, "lost": a.records - done, "held_by_killed": held,
                "generated_not_stored": generated - stored, "killed_in_flight_max": a.concurrency * EXPANSIONS}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--workers", type=int, nargs="+", default=[1, 2, 4])
    p.add_argument("--records", type=int, default=400)
    p.add_argument("--latency", type=float, default=0.5, help="seconds per generator request")
    p.add_argument("--concurrency", type=int, default=8, help="records in flight per worker")
    p.add_argument("--max-steps", type=int, default=2)
    a = p.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="reer-scale-"))
    print(f"{a.records} records, up to {a.max_steps} steps of {EXPANSIONS} candidates, generator latency "
          f"{a.latency} s, {a.concurrency} records in flight per worker, PostgreSQL on 127.0.0.1")
    print(f"{'workers':>7} {'candidates':>10} {'seconds':>8} {'candidates/s':>13} {'vs K x one':>10}")
    one = None
    with FakeScorer() as scorer:
        for k in a.workers:
            with FakeOpenAI(delay_s=a.latency) as fake:
                cands, seconds = workers(k, tmp, a, fake, scorer)
            r = cands / seconds
            one = one or (r if k == 1 else None)
            ratio = f"{r / (k * one):10.2f}" if one else f"{'-':>10}"
            print(f"{k:7d} {cands:10d} {seconds:8.1f} {r:13.1f} {ratio}", flush=True)
        for claimers in (1, 4):
            print(f"lease query alone: {claims_per_s(20000, claimers):.0f} claims/s with {claimers} claimer(s), "
                  "one record each", flush=True)
        k = kill_one(tmp, a, scorer)
    print(f"kill -9 of one of 2 workers mid-run: {k['lost']} of {k['records']} records lost; it held "
          f"{k['held_by_killed']}; {k['generated_not_stored']} generations paid for and not stored "
          f"(its in-flight requests: at most {k['killed_in_flight_max']})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
