"""A run killed with SIGKILL mid-way resumes and finishes with no completed step regenerated."""


from tests.support import runner as R
from tests.support.fake_openai import FakeOpenAI


def test_sigkill_then_resume_regenerates_no_step(tmp_path, tiny_model_dirs):
    inp = R.write_input(tmp_path / "in.jsonl")
    db, out = tmp_path / "run.db", tmp_path / "out.jsonl"
    concurrency = 2
    with FakeOpenAI(delay_s=0.15) as fake:
        cmd = R.run_cmd(fake.url, inp, db, out, tiny_model_dirs["gemma3"], "--max-steps", "4",
                        "--concurrency", str(concurrency))
        proc = R.start(cmd, mark="resume")
        try:
            assert R.wait_for(lambda: R.query(db, "select count(*) from step")[0][0] >= 3, timeout=240), \
                proc.stderr.read() if proc.poll() is not None else "no steps in time"
        finally:
            R.kill(proc)
        assert R.none_left("resume"), "the scorer outlived its parent"
        assert R.wait_for(lambda: fake.busy == 0, timeout=10)  # requests of the dead process answered
        steps_before = R.query(db, "select record_id, step, kept, best_after from step order by record_id, step")
        done_before = set(R.query(db, "select r.question, s.segment from step s join record r on r.id = s.record_id"))
        nodes_before = R.query(db, "select count(*) from node")[0][0]
        log_before = len(fake.log)

        p = R.run(cmd)
        assert p.returncode == 0, p.stderr + p.stdout
        assert "resumed run" in p.stdout and "steps kept" in p.stdout

    steps_after = R.query(db, "select record_id, step, kept, best_after from step order by record_id, step")
    assert steps_after[: len(steps_before)] == steps_before or set(steps_before) <= set(steps_after)
    rows = R.read_jsonl(out)
    assert [r["id"] for r in rows] == ["sea", "shop", "autumn", "essay"]
    # nothing that reached the store was generated again: every stored node has its own slot, and
    # the server produced at most what is stored plus what was in flight when the process died.
    nodes_after = R.query(db, "select count(*) from node")[0][0]
    assert R.query(db, "select count(*) from (select record_id, step, idx from node group by 1, 2, 3 having count(*) > 1)") == [(0,)]
    in_flight = concurrency * 2  # at most one request of `expansions` choices per record in flight
    assert fake.choices_generated("edit") + fake.count("draft") <= nodes_after + in_flight
    assert fake.count("draft") <= 4 + concurrency
    # the resumed run stored every output it was sent, and asked for nothing already stored:
    # no edit of a completed step, and as many new outputs as new nodes
    resumed = [r for r in fake.log[log_before:] if r.kind != "other"]
    assert not [r for r in resumed if r.kind == "edit" and (r.task, r.segment) in done_before]
    assert sum(r.n for r in resumed) == nodes_after - nodes_before > 0
