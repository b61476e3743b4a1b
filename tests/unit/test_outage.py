"""Riding out a store outage, without a database going away: which failures are waited for,
how the wait behaves (a fake clock), and the store's writes that a retry or a replay may repeat
(idempotent, fenced). On SQLite and (when it runs here) PostgreSQL."""

import asyncio
import json
import random
import sqlite3

import pytest

from agents.config import RetryPolicy
from agents.search.outage import StoreOutage
from agents.search.spill import read_spill, write_spill
from agents.watch.stats import Stats
from store import LeaseLost, Node, NodeKind, Step, StoreUnavailable
from store.outage import is_transient
from tests.unit.test_leases import many, worker


class PgError(Exception):
    """Stands for psycopg's errors: what matters is the SQLSTATE and the class name."""

    def __init__(self, message="", sqlstate=None):
        super().__init__(message)
        self.sqlstate = sqlstate


OperationalError = type("OperationalError", (PgError,), {"__module__": "psycopg"})


@pytest.mark.parametrize("exc, transient", [
    (OperationalError("server closed the connection unexpectedly"), True),
    (OperationalError("connection to server at 127.0.0.1 failed: Connection refused"), True),
    (OperationalError("terminating connection due to administrator command", "57P01"), True),
    (OperationalError("the database system is in recovery mode", "57P03"), True),
    (PgError("could not serialize access", "40001"), True),
    (PgError("deadlock detected", "40P01"), True),
    (PgError("connection failure", "08006"), True),
    (OperationalError('password authentication failed for user "x"'), False),
    (OperationalError('database "nope" does not exist'), False),
    (PgError('relation "node" does not exist', "42P01"), False),
    (PgError("could not extend file: No space left on device", "53100"), False),
    (sqlite3.OperationalError("database or disk is full"), False),
    (sqlite3.OperationalError("attempt to write a readonly database"), False),
    (sqlite3.OperationalError("disk I/O error"), False),
    (sqlite3.OperationalError("database is locked"), True),
])
def test_what_is_waited_for(exc, transient):
    assert is_transient(exc) is transient


class Clock:
    def __init__(self):
        self.t = 0.0

    def __call__(self):
        return self.t


def outage(wait_s, clock, lines, stopping=lambda: False):
    return StoreOutage(wait_s, Stats(), lambda m, level="INFO": lines.append(m), random.Random(0), stopping,
                       policy=RetryPolicy(base_s=0.01, max_s=0.01), clock=clock)


def down(transient=True):
    return StoreUnavailable("db", "server closed the connection unexpectedly", transient=transient)


def flaky(failures, clock, step_s=1.0, result="ok"):
    """A write that fails ``failures`` times, the clock moving ``step_s`` each try; it records
    the ``again`` it was given."""
    seen = []

    def write(again):
        seen.append(again)
        clock.t += step_s
        if len(seen) <= failures:
            raise down()
        return result
    return write, seen


def test_a_store_back_within_the_wait_is_retried_and_said_both_ways():
    clock, lines = Clock(), []
    o = outage(300, clock, lines)
    write, seen = flaky(3, clock)
    node = Node(record_id=1, kind=NodeKind.draft, step=-1, idx=0, raw="x")
    assert asyncio.run(o.call(write, held=[node])) == "ok"
    assert seen == [False, True, True, True]  # a retry may find its first try committed
    assert lines[0].startswith("STORE DOWN, retrying (0 s of 300): server closed") and lines[1] == "store back after 3 s"
    assert not o.down and not o.gave_up and o.held_nodes() == []


def test_past_the_wait_it_gives_up_holding_what_was_not_written():
    clock, lines = Clock(), []
    o = outage(5, clock, lines)
    write, seen = flaky(100, clock, step_s=2.0)
    node = Node(record_id=1, kind=NodeKind.draft, step=-1, idx=0, raw="x")
    with pytest.raises(StoreUnavailable):
        asyncio.run(o.call(write, held=[node]))
    assert len(seen) == 4 and o.gave_up  # down from t=2 on; the try at t=8 is past 5 s
    assert o.held_nodes() == [node]


def test_a_stop_during_the_wait_gives_up_at_once():
    clock, lines, stop = Clock(), [], []
    o = outage(300, clock, lines, stopping=lambda: bool(stop))
    stop.append(1)
    with pytest.raises(StoreUnavailable):
        asyncio.run(o.call(flaky(100, clock)[0]))
    assert o.gave_up


@pytest.mark.parametrize("lands", [True, False])
def test_a_call_in_a_thread_cancelled_meanwhile_ends_its_write_and_holds_only_what_did_not_land(lands):
    """Each store call of a run is made off the event loop; a record cancelled during one waits
    for it, and what it wrote is not held (to be spilled) as if it had not."""
    import threading

    o = outage(300, Clock(), [])
    started, release, ended = threading.Event(), threading.Event(), []
    node = Node(record_id=1, kind=NodeKind.draft, step=-1, idx=0, raw="x")

    def write(again):
        started.set()
        release.wait(5)
        ended.append(threading.current_thread() is not threading.main_thread())
        if not lands:
            raise down(transient=False)
        return "ok"

    async def main():
        task = asyncio.create_task(o.call(write, held=[node], in_thread=True))
        await asyncio.to_thread(started.wait, 5)
        task.cancel()
        await asyncio.sleep(0.05)
        assert not task.done()  # still waiting for the write: nothing is written after it stops
        release.set()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(main())
    assert ended == [True]
    assert o.held_nodes() == ([] if lands else [node])


@pytest.mark.parametrize("wait_s, transient", [(0, True), (300, False)])
def test_no_wait_or_a_lasting_failure_stops_at_once(wait_s, transient):
    clock, lines = Clock(), []
    o = outage(wait_s, clock, lines)
    calls = []

    def write(again):
        calls.append(again)
        raise down(transient)
    with pytest.raises(StoreUnavailable):
        asyncio.run(o.call(write))
    assert calls == [False] and not lines and not o.gave_up


def test_held_generations_for_a_record_taken_over_meanwhile_are_dropped_and_counted_wasted():
    clock, lines = Clock(), []
    o = outage(300, clock, lines)
    tries = []

    def write(again):
        tries.append(again)
        if not again:
            raise down()
        raise LeaseLost(1)
    nodes = [Node(record_id=1, kind=NodeKind.candidate, step=0, idx=i, raw="x") for i in range(2)]
    with pytest.raises(LeaseLost):
        asyncio.run(o.call(write, held=nodes))
    assert o.stats.wasted == 2 and o.held_nodes() == []


def cand(record_id, step, idx, text="c"):
    return Node(record_id=record_id, kind=NodeKind.candidate, step=step, idx=idx, text=text, raw=text)


def test_a_retried_write_stores_nothing_twice(db):
    st, run = worker(db, recs=many(1))
    [c] = st.claim(run, 1)
    first = st.add_nodes([cand(c.record.id, 0, 0), cand(c.record.id, 0, 1)])
    again = st.add_nodes([cand(c.record.id, 0, 0), cand(c.record.id, 0, 1)], again=True)
    assert [n.id for n in again] == [n.id for n in first] and len(st.load_progress(c.record.id).candidates[0]) == 2
    step = Step(step=0, segment="s", kept="k", best_after=1.0, record_id=c.record.id)
    st.complete_step(c.record.id, step)
    st.complete_step(c.record.id, step, again=True)  # its first try committed unseen
    assert len(st.load_progress(c.record.id).steps) == 1


def test_a_replay_stores_only_where_nothing_moved_on_and_only_once(db, tmp_path):
    a, run = worker(db, recs=many(3))
    held = a.claim(run, 3)
    r0, r1, r2 = (c.record.id for c in held)
    a.add_nodes([cand(r1, 0, 0)])
    a.complete_step(r1, Step(step=0, segment="s", kept="k", best_after=1.0, record_id=r1))
    spilled = [cand(r0, 0, 0), cand(r0, 0, 1), cand(r1, 0, 1), cand(r2, 0, 0)]
    b, _ = worker(db, recs=many(3))
    with b.engine.begin() as conn:  # r2 was taken over by a live worker meanwhile
        conn.exec_driver_sql(f"update record set worker_id = {b.worker_id} where id = {r2}")
    write_spill(tmp_path / "s.jsonl", spilled, a.worker_id)
    [(lease, nodes)] = read_spill(tmp_path / "s.jsonl").items()
    assert lease == a.worker_id and [json.loads(x)["record"] for x in (tmp_path / "s.jsonl").read_text().splitlines()] \
        == [r0, r0, r1, r2]
    assert b.restore_nodes(nodes, lease) == 2  # r0's two; r1's step is done; r2 is b's
    assert b.restore_nodes(nodes, lease) == 0
    assert len(b.load_progress(r0).candidates[0]) == 2 and len(b.load_progress(r1).candidates[0]) == 1
    assert b.load_progress(r2).candidates == {}
