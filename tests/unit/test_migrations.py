"""A store made by an earlier reer opens in this one, brought to its schema with what it holds;
one made by a later reer is refused. tests/fixtures/store-v1.db was written by reer before its
schema was versioned (a run of three records: one done, one a step in, one not started)."""

import shutil
from pathlib import Path

import pytest
from sqlalchemy import create_engine, inspect, text

from store import RecordIn, RecordStatus, Store, StoreUnavailable
from store.migrations import READING_INDEXES, VERSION

V1 = Path(__file__).resolve().parents[1] / "fixtures" / "store-v1.db"


def test_a_version_1_store_opened_by_a_reader_is_migrated_with_what_it_holds(tmp_path):
    db = str(shutil.copy(V1, tmp_path / "old.db"))
    reader = Store.open(db, create=False)
    run_id = reader.latest_run_id()
    assert {r.key: r.status for r in reader.records_to_run(run_id)} == {"half": RecordStatus.running,
                                                                       "fresh": RecordStatus.pending}
    assert [r.key for r, p in reader.finished_records(run_id)] == ["done"]
    with reader.engine.connect() as c:
        assert c.execute(text("select version from reer_schema")).scalar() == VERSION
    assert "worker_id" in {c["name"] for c in inspect(reader.engine).get_columns("record")}
    made = {i["name"] for t in ("record", "node", "step") for i in inspect(reader.engine).get_indexes(t)}
    assert READING_INDEXES <= made
    reader.close()


def test_a_version_3_store_gets_its_records_counters_from_their_trees(tmp_path):
    """Version 3 made from a shaped store by taking version 4's counters away; once migrated,
    status says what it said before (the counters filled from the nodes and steps)."""
    from agents.inspect import status
    from tests.support.shaped import shaped_run

    db = str(tmp_path / "x.db")
    st, run = shaped_run(db, records=8, steps=4)
    before = status.snapshot(st, run)
    with st.engine.begin() as c:
        c.execute(text("drop index ix_record_run_status"))
        for name in ("accepted_steps", "nodes", "rejected_nodes", "prompt_tokens", "completion_tokens"):
            c.execute(text(f"alter table record drop column {name}"))
        c.execute(text("create index ix_record_run_status on record (run_id, status, position, initial_score, "
                       "final_score, updated_at)"))
        c.execute(text("update reer_schema set version = 3"))
    st.close()
    st = Store.open(db, create=False)
    after = status.snapshot(st, run)
    assert after["generations"] == before["generations"] == {"stored": 7 + 5 * 8, "rejected": 5}
    assert (after["steps"], after["accepted_steps"], after["tokens"]) == \
        (before["steps"], before["accepted_steps"], before["tokens"]) == (20, 10, after["tokens"])
    assert after["tokens"]["prompt"] == 7 * 900 + 5 * 4 * 1200
    st.close()


def test_a_migrated_store_claims_and_keeps_its_stored_steps(tmp_path):
    db = str(shutil.copy(V1, tmp_path / "old.db"))
    recs = [RecordIn(key=k, position=i, question=f"question {k}", answer=f"answer {k}", lang="en")
            for i, k in enumerate(["done", "half", "fresh"])]
    st = Store.open(db)
    start = st.begin_run({"search": {"max_steps": 10}}, "in.jsonl", recs, lease_s=60, alone=True)
    assert start.resumed and (start.done, start.to_run, start.steps_kept) == (1, 2, 1)
    claims = st.claim(start.run_id, 5)
    assert [c.record.key for c in claims] == ["half", "fresh"] and claims[0].record.steps_done == 1
    assert len(st.load_progress(claims[0].record.id).steps) == 1


def test_a_store_from_a_later_reer_is_refused(tmp_path):
    db = str(tmp_path / "new.db")
    Store.open(db).close()
    with create_engine(f"sqlite:///{db}").begin() as c:
        c.execute(text("update reer_schema set version = :v"), {"v": VERSION + 1})
    with pytest.raises(StoreUnavailable, match=rf"made by a later reer \(schema version {VERSION + 1}; this reer "
                                               rf"reads up to {VERSION}\)"):
        Store.open(db)


def test_a_version_1_postgres_schema_is_migrated_once_by_workers_opening_it_together():
    """Version 1 made by taking version 2's and 3's additions away; then three processes open it at once."""
    import multiprocessing

    from tests.support.pg import pg_schema

    with pg_schema("m") as url:
        st = Store.open(url)
        st.begin_run({"search": {}}, "in.jsonl", [RecordIn(key="a", position=0, question="q", answer="a", lang="en")])
        with st.engine.begin() as c:
            for sql in ("drop table reer_schema", "drop index ix_record_queue", "drop index ix_record_run_status",
                        "drop index ix_node_usage", "drop index ix_step_choice", "alter table record drop column worker_id",
                        "drop table worker", *(f"alter table record drop column {c}" for c in (
                            "accepted_steps", "nodes", "rejected_nodes", "prompt_tokens", "completion_tokens"))):
                c.execute(text(sql))
        st.close()
        ctx = multiprocessing.get_context("fork")
        procs = [ctx.Process(target=_open, args=(url,)) for _ in range(3)]
        for p in procs:
            p.start()
        for p in procs:
            p.join(60)
        assert [p.exitcode for p in procs] == [0, 0, 0]
        st = Store.open(url, create=False)
        with st.engine.connect() as c:
            assert c.execute(text("select version from reer_schema")).scalars().all() == [VERSION]
        start = st.begin_run({"search": {}}, "in.jsonl", [RecordIn(key="a", position=0, question="q", answer="a",
                                                                   lang="en")], lease_s=60)
        assert [c.record.key for c in st.claim(start.run_id, 5)] == ["a"]
        st.close()


def _open(url: str) -> None:
    Store.open(url).close()
