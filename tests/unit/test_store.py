"""The store's state machine, on SQLite and (when it runs here) PostgreSQL."""

import pytest

from store import Node, NodeKind, RecordIn, RecordStatus, RunMismatch, Step, Store, StoreStateError

RECS = [RecordIn(key=str(i), position=i, question=f"q{i}", answer=f"a{i}", lang="en") for i in range(3)]
CFG = {"search": {"max_steps": 10}}


def node(record_id, step, idx, kind=NodeKind.candidate, text="t", rejected=None):
    return Node(record_id=record_id, kind=kind, step=step, idx=idx, text=text, raw=text, rejected=rejected)


def test_new_run_then_resume_reports_kept_progress(db):
    st = Store.open(db)
    start = st.begin_run(CFG, "in.jsonl", RECS)
    assert not start.resumed and start.to_run == 3
    r0 = st.records_to_run(start.run_id)[0]
    st.mark_running(r0.id)
    d = st.add_node(node(r0.id, -1, 0, NodeKind.draft))
    st.set_initial_score(r0.id, d.id, 1.5)
    c = st.add_node(node(r0.id, 0, 0))
    st.complete_step(r0.id, Step(record_id=r0.id, step=0, segment="s", kept="k", chosen_node_id=c.id, best_after=1.2))
    st.close()

    st = Store.open(db)
    again = st.begin_run(CFG, "in.jsonl", RECS)
    assert again.resumed and again.to_run == 3 and again.steps_kept == 1
    p = st.load_progress(r0.id)
    assert p.draft.score == 1.5 and [s.kept for s in p.steps] == ["k"] and len(p.candidates[0]) == 1


def test_steps_complete_in_order_only_and_a_node_slot_is_unique(db):
    st = Store.open(db)
    run = st.begin_run(CFG, "in.jsonl", RECS).run_id
    r = st.records_to_run(run)[0]
    with pytest.raises(StoreStateError):
        st.complete_step(r.id, Step(record_id=r.id, step=1, segment="s", kept="k", best_after=1.0))
    st.add_node(node(r.id, 0, 0))
    with pytest.raises(StoreStateError, match=r"already stored in one of the slots \(record \d+, step 0, idx 0\)"):
        st.add_node(node(r.id, 0, 0))  # the same (record, step, idx) twice is never stored
    assert len(st.load_progress(r.id).candidates[0]) == 1


def test_finished_records_leave_the_queue_and_are_exported_in_order(db):
    st = Store.open(db)
    run = st.begin_run(CFG, "in.jsonl", RECS).run_id
    r0, r1, r2 = st.records_to_run(run)
    st.finish_record(r1.id, "thinking", 0.3)
    st.end_record(r2.id, RecordStatus.failed, "endpoint down")
    assert [r.key for r in st.records_to_run(run)] == ["0"]
    assert [r.key for r, _ in st.finished_records(run)] == ["1"]
    assert [(r.key, r.error) for r in st.unfinished_problems(run)] == [("2", "endpoint down")]
    with pytest.raises(StoreStateError):
        st.end_record(r0.id, RecordStatus.done, "x")


def test_changed_config_or_input_is_refused_without_force(db):
    st = Store.open(db)
    run = st.begin_run(CFG, "in.jsonl", RECS).run_id
    with pytest.raises(RunMismatch, match="max_steps"):
        st.begin_run({"search": {"max_steps": 3}}, "in.jsonl", RECS)
    changed = [RECS[0], RecordIn(key="1", position=1, question="q1", answer="NEW", lang="en"),
               RecordIn(key="9", position=2, question="q9", answer="a9", lang="en")]
    with pytest.raises(RunMismatch, match=r"different input \(1 changed: 1; 1 added: 9; 1 removed: 2\)"):
        st.begin_run(CFG, "in.jsonl", changed)
    with pytest.raises(RunMismatch, match=r"input \(the same records in another order\)"):
        st.begin_run(CFG, "in.jsonl", RECS[::-1])
    many = [RecordIn(key=f"n{i}", position=i, question="q", answer="a", lang="en") for i in range(8)]
    with pytest.raises(RunMismatch, match=r"8 added: n0, n1, n2, n3, n4, …; 3 removed: 0, 1, 2\)"):
        st.begin_run(CFG, "in.jsonl", many)
    r1 = [r for r in st.records_to_run(run) if r.key == "1"][0]
    st.finish_record(r1.id, "old thinking", 0.1)
    start = st.begin_run(CFG, "in.jsonl", changed, force=True)
    assert start.changes == ["1 records added", "1 changed (restarted)", "1 removed"]
    assert sorted(r.key for r in st.records_to_run(run)) == ["0", "1", "9"]
    assert st.status_counts(run)[RecordStatus.removed] == 1


def test_a_removed_record_that_comes_back_keeps_its_tree(db):
    st = Store.open(db)
    run = st.begin_run(CFG, "in.jsonl", RECS).run_id
    r0, r1, _ = st.records_to_run(run)
    for r in (r0, r1):  # r0 finished, r1 half-way: a draft and one step
        d = st.add_node(node(r.id, -1, 0, NodeKind.draft))
        st.set_initial_score(r.id, d.id, 2.0)
        c = st.add_node(node(r.id, 0, 0))
        st.complete_step(r.id, Step(record_id=r.id, step=0, segment="s", kept="k", chosen_node_id=c.id, best_after=1.0))
    st.finish_record(r0.id, "thinking", 1.0)
    st.begin_run(CFG, "in.jsonl", RECS[2:], force=True)
    assert st.status_counts(run)[RecordStatus.removed] == 2

    back = st.begin_run(CFG, "in.jsonl", RECS, force=True)
    assert back.changes == ["2 records added", "0 changed (restarted)", "0 removed"]
    assert back.done == 1 and back.steps_kept == 1  # r0 done as it was; r1 resumes from its step
    assert [r.key for r in st.records_to_run(run)] == ["1", "2"]
    assert [r.key for r, _ in st.finished_records(run)] == ["0"]
    for r in (r0, r1):
        p = st.load_progress(r.id)
        assert p.draft.score == 2.0 and [s.kept for s in p.steps] == ["k"]
