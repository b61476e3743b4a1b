"""Workers sharing one run: claims that never overlap, leases that a heartbeat keeps and that
run out, writes fenced on holding the record, and one run created by workers that start at the
same instant. On SQLite and (when it runs here) PostgreSQL."""

import multiprocessing

import pytest
from sqlalchemy import func, select

from store import LeaseLost, Node, NodeKind, Record, RecordIn, Run, Step, Store, StoreStateError
from tests.support.pg import pg_schema
from tests.unit.test_store import RECS

LONG = 3600.0


def worker(db, lease_s=LONG, alone=False, recs=RECS, cfg=None, force=False):
    st = Store.open(db)
    start = st.begin_run(cfg or {"search": {}}, "in.jsonl", recs, force=force, lease_s=lease_s, alone=alone)
    return st, start.run_id


def many(n):
    return [RecordIn(key=str(i), position=i, question=f"q{i}", answer=f"a{i}", lang="en") for i in range(n)]


def test_claims_of_two_workers_never_overlap_and_follow_the_input_order(db):
    a, run = worker(db, recs=many(7))
    b, _ = worker(db, recs=many(7))
    first = [c.record.key for c in a.claim(run, 3)]
    second = [c.record.key for c in b.claim(run, 3)]
    assert first == ["0", "1", "2"] and second == ["3", "4", "5"]
    assert [c.record.key for c in a.claim(run, 5)] == ["6"] and b.claim(run, 5) == []
    with a.engine.connect() as c:
        held = dict(c.execute(select(Record.key, Record.worker_id)).all())
    assert {held[k] for k in first + ["6"]} == {a.worker_id} and {held[k] for k in second} == {b.worker_id}
    waiting = b.waiting(run)
    assert (waiting.unfinished, waiting.held_elsewhere) == (7, 4) and 0 < waiting.lease_ends_s <= LONG


def test_an_expired_lease_hands_the_record_over_with_its_stored_steps_and_fences_the_old_holder(db):
    a, run = worker(db, lease_s=0.0)  # its lease runs out at once: a worker that stopped answering
    [c] = a.claim(run, 1)
    rec = c.record
    d = a.add_node(Node(record_id=rec.id, kind=NodeKind.draft, step=-1, idx=0, text="x\n\ny", raw="x\n\ny"))
    a.set_initial_score(rec.id, d.id, 1.5)
    a.complete_step(rec.id, Step(record_id=rec.id, step=0, segment="x", kept="x", best_after=1.5))

    b, _ = worker(db)
    [taken] = b.claim(run, 1)
    assert taken.record.id == rec.id and taken.taken_from.startswith("pid ")
    assert taken.record.steps_done == 1 and len(b.load_progress(rec.id).steps) == 1  # resumes, not redone
    with pytest.raises(LeaseLost):
        a.add_node(Node(record_id=rec.id, kind=NodeKind.candidate, step=1, idx=0, text="late", raw="late"))
    with pytest.raises(LeaseLost):
        a.complete_step(rec.id, Step(record_id=rec.id, step=1, segment="y", kept="y", best_after=1.5))
    with pytest.raises(LeaseLost):
        a.finish_record(rec.id, "x\n\ny", 1.5)
    b.complete_step(rec.id, Step(record_id=rec.id, step=1, segment="y", kept="y", best_after=1.4))
    b.finish_record(rec.id, "x\n\ny", 1.4)
    assert len(b.load_progress(rec.id).candidates) == 0 and [r.key for r, _ in b.finished_records(run)] == ["0"]
    assert [r.key for r, _ in b.finished_records(run, b.worker_id)] == ["0"]
    assert list(b.finished_records(run, a.worker_id)) == []


def test_a_heartbeat_keeps_the_lease_and_leaving_frees_the_records_at_once(db):
    a, run = worker(db, lease_s=0.0)
    assert len(a.claim(run, 2)) == 2
    a.lease_s = LONG
    a.heartbeat()  # renewed before anyone took them: still a's
    b, _ = worker(db)
    assert [c.record.key for c in b.claim(run, 3)] == ["2"]
    assert b.shared(run) and a.shared(run)
    live = b.live_workers(run)
    assert [(w["holds"], w["finished"]) for w in live] == [(2, 0), (1, 0)]
    assert all(0 < w["lease_left_s"] <= LONG and w["name"].startswith("pid ") for w in live)
    a.leave()
    assert [w["holds"] for w in b.live_workers(run)] == [1]
    assert [(c.record.key, c.taken_from) for c in b.claim(run, 3)] == [("0", None), ("1", None)]


def test_a_worker_alone_on_the_database_frees_the_records_of_workers_marked_live(db):
    a, run = worker(db)
    a.claim(run, 3)
    b, _ = worker(db, alone=True)  # it holds the SQLite file's lock: a is dead, whatever its lease says
    assert len(b.claim(run, 3)) == 3 and not b.shared(run)


def test_force_is_refused_while_another_worker_is_live(db):
    a, run = worker(db)
    with pytest.raises(StoreStateError, match=r"--force would change the run under 1 live workers \(pid \d+ on "):
        worker(db, cfg={"search": {"max_steps": 1}}, force=True)
    a.leave()
    b, _ = worker(db, cfg={"search": {"max_steps": 1}}, force=True)
    assert b.run(run).config == {"search": {"max_steps": 1}}


def _start(url, barrier, results):
    barrier.wait()
    st = Store.open(url)
    start = st.begin_run({"search": {}}, "in.jsonl", many(4), lease_s=LONG)
    results.put(start.resumed)
    st.close()


def test_workers_starting_at_the_same_instant_on_a_fresh_database_make_one_run():
    """The schema and the run are each created once: the others wait for the lock, then resume."""
    ctx = multiprocessing.get_context("fork")
    for _ in range(10):
        with pg_schema("l") as url:
            barrier, results = ctx.Barrier(3), ctx.Queue()
            procs = [ctx.Process(target=_start, args=(url, barrier, results)) for _ in range(3)]
            for p in procs:
                p.start()
            for p in procs:
                p.join(60)
            assert [p.exitcode for p in procs] == [0, 0, 0]
            assert sorted(results.get(timeout=5) for _ in procs) == [False, True, True]
            st = Store.open(url, create=False)
            with st.engine.connect() as c:
                assert c.execute(select(func.count()).select_from(Run)).scalar() == 1
                assert c.execute(select(func.count()).select_from(Record)).scalar() == 4
            st.close()
