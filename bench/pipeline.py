"""Pipeline benchmark (not in CI): the whole ``python -m agents.run`` against loopback servers.

    .venv/bin/python bench/pipeline.py                    # both parts below
    .venv/bin/python bench/pipeline.py --part scaling --latency 0.5 --concurrency 1 4 16 64
    .venv/bin/python bench/pipeline.py --part overhead --records 300

``scaling``: a fake OpenAI-compatible generator that answers after ``--latency`` seconds, and
the real scorer process on a tiny trained Llama; records/s for each ``--concurrency``.

``overhead``: an instant generator and an instant fake scorer, so that all that is left is
reer's own work: the agents' event loop, the HTTP clients and the SQLite store. It prints how
many candidate nodes per second that sustains (each one generated, stored, scored, its score
stored); the target is at least 500/s, so that orchestration is never the bottleneck.

Rates are measured inside the search (first stored node to last finished record, from the
store's timestamps), so process start-up and the scorer's model load are left out.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from datetime import datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.support import runner as R  # noqa: E402
from tests.support.fake_openai import FakeOpenAI  # noqa: E402
from tests.support.fake_scorer import FakeScorer  # noqa: E402
from tests.support.tiny_models import save_tiny  # noqa: E402


def one_run(tmp: Path, name: str, records: int, concurrency: int, latency: float, scorer: str | None,
            model: Path | str, max_steps: int) -> dict:
    recs = [{**R.RECORDS[i % len(R.RECORDS)], "id": f"r{i}"} for i in range(records)]
    inp = R.write_input(tmp / f"{name}.jsonl", recs)
    db, out = tmp / f"{name}.db", tmp / f"{name}.out.jsonl"
    with FakeOpenAI(delay_s=latency) as fake:
        extra = ["--concurrency", str(concurrency), "--max-steps", str(max_steps), "--timeout", "60"]
        if scorer:
            extra += ["--scorer-url", scorer]
        p = R.run(R.run_cmd(fake.url, inp, db, out, model, *extra), timeout=3600)
    if p.returncode != 0:
        raise SystemExit(f"run {name} failed ({p.returncode}):\n{p.stdout[-2000:]}\n{p.stderr[-2000:]}")
    [(first,)] = R.query(db, "select min(created_at) from node")
    [(last,)] = R.query(db, "select max(updated_at) from record")
    span = (datetime.fromisoformat(last) - datetime.fromisoformat(first)).total_seconds()
    [(done,)] = R.query(db, "select count(*) from record where status='done'")
    [(cands,)] = R.query(db, "select count(*) from node where kind='candidate'")
    [(steps,)] = R.query(db, "select count(*) from step")
    return {"concurrency": concurrency, "records": done, "steps": steps, "candidates": cands, "seconds": span,
            "records_per_s": done / span, "candidates_per_s": cands / span}


def store_only(tmp: Path, records: int = 200, steps: int = 4, expansions: int = 2) -> float:
    """Candidate nodes per second through the store's calls of a search, with nothing else."""
    import time

    from store import Node, NodeKind, RecordIn, Step, Store

    st = Store.open(str(tmp / "store-only.db"))
    start = st.begin_run({"bench": 1}, "in.jsonl", [RecordIn(f"r{i}", i, f"q{i}", "a " * 200, "en") for i in range(records)])
    text = "some thinking " * 60
    t0 = time.perf_counter()
    for rec in st.records_to_run(start.run_id):
        st.mark_running(rec.id)
        st.load_progress(rec.id)
        [draft] = st.add_nodes([Node(record_id=rec.id, kind=NodeKind.draft, step=-1, idx=0, text=text, raw=text)])
        st.set_initial_score(rec.id, draft.id, 1.0)
        for k in range(steps):
            nodes = st.add_nodes([Node(record_id=rec.id, kind=NodeKind.candidate, step=k, idx=i, text=text, raw=text)
                                  for i in range(expansions)])
            st.complete_step(rec.id, Step(step=k, segment=text, kept=text, chosen_node_id=nodes[0].id,
                                          best_after=0.5, record_id=rec.id), {n.id: 0.5 for n in nodes})
        st.finish_record(rec.id, text, 0.5)
    elapsed = time.perf_counter() - t0
    st.close()
    return records * steps * expansions / elapsed


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--part", choices=["scaling", "overhead", "both"], default="both")
    p.add_argument("--records", type=int, default=None, help="(default: 4 x concurrency for scaling, 300 for overhead)")
    p.add_argument("--concurrency", type=int, nargs="+", default=[1, 4, 16, 64])
    p.add_argument("--latency", type=float, default=0.5, help="seconds per generator request (scaling)")
    p.add_argument("--max-steps", type=int, default=4)
    a = p.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="reer-pipeline-"))
    if a.part in ("scaling", "both"):
        model = save_tiny("llama", tmp / "model")
        print(f"scaling: generator latency {a.latency} s, real scorer on a tiny Llama (CPU), "
              f"up to {a.max_steps} steps of 2 candidates")
        print(f"{'concurrency':>11} {'records':>8} {'seconds':>8} {'records/s':>10} {'candidates/s':>13}")
        for c in a.concurrency:
            r = one_run(tmp, f"scaling-{c}", a.records or 4 * c, c, a.latency, None, model, a.max_steps)
            print(f"{c:11d} {r['records']:8d} {r['seconds']:8.1f} {r['records_per_s']:10.2f} {r['candidates_per_s']:13.1f}",
                  flush=True)
    if a.part in ("overhead", "both"):
        c = max(a.concurrency)
        with FakeScorer() as scorer:
            r = one_run(tmp, "overhead", a.records or 300, c, 0.0, scorer.url, "fake", a.max_steps)
        verdict = "meets" if r["candidates_per_s"] >= 500 else "MISSES"
        print(f"store alone (the same calls per record, SQLite): {store_only(tmp):.0f} candidate nodes/s")
        print(f"overhead: instant generator and scorer, concurrency {c}, SQLite: {r['records']} records, "
              f"{r['candidates']} candidate nodes in {r['seconds']:.1f} s = {r['candidates_per_s']:.0f} nodes/s "
              f"({r['records_per_s']:.1f} records/s); {verdict} the 500/s target")
    return 0


if __name__ == "__main__":
    sys.exit(main())
