"""Soak test (not in CI): many records against the fault-injecting server, with random SIGKILLs.

    .venv/bin/python bench/soak.py --records 500 --fault-rate 0.2 --kills 8

Prints records done / failed / skipped / lost (must be 0), steps lost across kills (must be 0),
and the wasted-request ratio: generated outputs that never reached the store, over all outputs.
Uses a tiny trained Llama as the scorer, so it measures the machinery, not a model.
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.support import runner as R  # noqa: E402
from tests.support.fake_openai import FakeOpenAI  # noqa: E402
from tests.support.tiny_models import save_tiny  # noqa: E402


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--records", type=int, default=500)
    p.add_argument("--fault-rate", type=float, default=0.2)
    p.add_argument("--kills", type=int, default=8)
    p.add_argument("--concurrency", type=int, default=32)
    p.add_argument("--max-steps", type=int, default=3)
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args()
    rng = random.Random(a.seed)
    tmp = Path(tempfile.mkdtemp(prefix="reer-soak-"))
    model = save_tiny("llama", tmp / "model")
    records = [{**R.RECORDS[i % len(R.RECORDS)], "id": f"r{i}"} for i in range(a.records)]
    inp = R.write_input(tmp / "in.jsonl", records)
    db, out = tmp / "soak.db", tmp / "soak.jsonl"
    t0 = time.monotonic()
    lost_steps = kills = 0
    with FakeOpenAI(fault_rate=a.fault_rate, hang_s=3.0, seed=a.seed) as fake:
        cmd = R.run_cmd(fake.url, inp, db, out, model, "--max-steps", str(a.max_steps), "--concurrency",
                        str(a.concurrency), "--timeout", "2", "--max-retries", "4", "--draft-attempts", "2")
        while True:
            proc = R.start(cmd)
            if kills < a.kills:
                time.sleep(rng.uniform(5.0, 30.0))
                if proc.poll() is None:
                    before = set(R.query(db, "select record_id, step, kept from step"))
                    R.kill(proc)
                    kills += 1
                    lost_steps += len(before - set(R.query(db, "select record_id, step, kept from step")))
                    print(f"kill {kills}: {len(before)} steps stored", flush=True)
                    continue
            _, stderr = proc.communicate()
            if proc.returncode in (0, 1):
                break
            print(f"run ended with {proc.returncode} ({stderr.strip()[-300:]}); resuming", flush=True)
        generated = fake.choices_generated("edit") + fake.choices_generated("draft")
        injected = len(fake.injected)
    statuses = dict(R.query(db, "select status, count(*) from record group by status"))
    stored = R.query(db, "select count(*) from node")[0][0]
    done, failed, skipped = (statuses.get(s, 0) for s in ("done", "failed", "skipped"))
    lost = a.records - done - failed - skipped
    print(f"records {a.records}: done {done}, failed {failed}, skipped {skipped}, lost {lost}")
    print(f"kills {kills}, steps lost {lost_steps}, faults injected {injected}")
    print(f"outputs generated {generated}, stored {stored}, wasted {max(0, generated - stored)} "
          f"({max(0, generated - stored) / max(generated, 1):.1%})")
    print(f"wall time {time.monotonic() - t0:.0f} s; output lines {len(R.read_jsonl(out))}")
    return 0 if lost == 0 and lost_steps == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
