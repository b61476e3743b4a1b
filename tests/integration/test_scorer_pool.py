"""Several scorers in one run, over real loopback HTTP: each record's scoring requests go to one
scorer, a scorer that dies has its records scored by the others, and a scorer that does not
score as the run is configured to is refused before anything is stored."""

from tests.integration.test_faults import many_records
from tests.support import runner as R
from tests.support.fake_openai import FakeOpenAI
from tests.support.fake_scorer import FakeScorer


def distinct_records(n: int) -> list[dict]:
    return [{**r, "question": f"{r['question']} ({r['id']})"} for r in many_records(n)]


def cmd(fake, scorers, inp, db, out, *extra):
    urls = [a for s in scorers for a in ("--scorer-url", s.url)]
    return R.run_cmd(fake.url, inp, db, out, "fake", *urls, "--max-steps", "2", "--concurrency", "4", *extra)


def test_each_record_sticks_to_one_scorer_and_the_records_spread_over_both(tmp_path):
    inp = R.write_input(tmp_path / "in.jsonl", distinct_records(16))
    with FakeOpenAI() as fake, FakeScorer() as a, FakeScorer() as b:
        p = R.run(cmd(fake, [a, b], inp, tmp_path / "run.db", tmp_path / "out.jsonl"))
    assert p.returncode == 0, p.stderr
    assert not set(a.records) & set(b.records), "a record was scored on both scorers"
    assert len(a.records) + len(b.records) == 16 and min(len(a.records), len(b.records)) >= 3
    assert all(n == 3 for n in [*a.records.values(), *b.records.values()])  # the draft, then 2 steps


def test_a_scorer_that_dies_mid_run_has_its_records_scored_by_the_other(tmp_path):
    inp = R.write_input(tmp_path / "in.jsonl", distinct_records(24))
    db = tmp_path / "run.db"
    with FakeOpenAI(delay_s=0.5) as fake, FakeScorer() as b:
        a = FakeScorer().__enter__()
        proc = R.start(cmd(fake, [a, b], inp, db, tmp_path / "out.jsonl"))
        assert R.wait_for(lambda: len(a.records) >= 3, timeout=120), "the first scorer scored nothing"
        a.kill()
        stdout, stderr = proc.communicate(timeout=300)
    assert proc.returncode == 0, stderr
    assert R.query(db, "select distinct status from record") == [("done",)]
    assert f"the scorer {a.url} stopped answering" in stdout
    moved = {q for q, n in a.records.items() if n < 3} & set(b.records)
    assert moved, (a.records, b.records)  # begun on the dead scorer, finished on the other
    assert all(a.records[q] + b.records[q] == 3 for q in moved)


def test_a_scorer_of_another_model_is_refused_before_anything_is_stored(tmp_path):
    inp = R.write_input(tmp_path / "in.jsonl", distinct_records(2))
    db = tmp_path / "run.db"
    with FakeOpenAI() as fake, FakeScorer(model="Qwen/Qwen3-8B-Base") as s:
        p = R.run(cmd(fake, [s], inp, db, tmp_path / "out.jsonl"))
    assert p.returncode == 2
    assert p.stderr.strip() == (f"reer: error: the scorer at {s.url} does not score as this run is configured to: "
                                "its model is 'Qwen/Qwen3-8B-Base', this run's --scorer-model gives 'fake'. Give this "
                                "run the scorer's settings, or another --scorer-url")
    assert not db.exists() and s.calls == 0


def test_a_scorer_is_started_per_device(tmp_path, tiny_model_dirs):
    inp = R.write_input(tmp_path / "in.jsonl", distinct_records(8))
    db = tmp_path / "run.db"
    with FakeOpenAI() as fake:
        p = R.run(R.run_cmd(fake.url, inp, db, tmp_path / "out.jsonl", tiny_model_dirs["llama"],
                            "--scorer-device", "cpu,cpu", "--max-steps", "1", "--concurrency", "8"))
    assert p.returncode == 0, p.stderr
    assert "starting the scorer-0" in p.stdout and "starting the scorer-1" in p.stdout
    for i in range(2):
        assert "scorer: ready" in (tmp_path / f"run.db.scorer-{i}.log").read_text()
    assert R.query(db, "select distinct status from record") == [("done",)]


def test_a_scorer_dead_from_the_start_does_not_hold_the_run_and_joins_when_it_answers(tmp_path):
    inp = R.write_input(tmp_path / "in.jsonl", distinct_records(24))
    db = tmp_path / "run.db"
    dead = FakeScorer().__enter__()  # its port then refuses: the scorer is not up yet
    dead.kill()
    with FakeOpenAI(delay_s=0.3) as fake, FakeScorer() as live:
        proc = R.start(cmd(fake, [dead, live], inp, db, tmp_path / "out.jsonl", "--concurrency", "2", "--scorer-wait", "2"))
        assert R.wait_for(lambda: len(live.records) >= 2, timeout=120), "the live scorer got no record"
        with FakeScorer(port=int(dead.url.rsplit(":", 1)[1])) as back:  # it comes up on its port
            stdout, stderr = proc.communicate(timeout=300)
    assert proc.returncode == 0, stderr
    assert R.query(db, "select distinct status from record") == [("done",)]
    assert f"waiting for the scorer at {dead.url} to answer" in stdout  # said, while the other one scored
    assert f"the scorer at {dead.url} answers now and takes back its records" in stdout
    assert back.records, "the scorer that came back took no record"


def test_every_scorer_dead_from_the_start_stops_the_run_before_anything_is_stored(tmp_path):
    inp = R.write_input(tmp_path / "in.jsonl", distinct_records(2))
    db = tmp_path / "run.db"
    dead = [FakeScorer().__enter__(), FakeScorer().__enter__()]
    for s in dead:
        s.kill()
    with FakeOpenAI() as fake:
        p = R.run(cmd(fake, dead, inp, db, tmp_path / "out.jsonl", "--scorer-wait", "3"))
    assert p.returncode == 2
    assert p.stderr.startswith(f"reer: error: the scorer at {dead[0].url} did not answer") or \
        p.stderr.startswith(f"reer: error: the scorer at {dead[1].url} did not answer"), p.stderr
    assert not db.exists()


def test_the_only_scorer_restarting_mid_run_makes_the_records_wait_not_fail(tmp_path):
    inp = R.write_input(tmp_path / "in.jsonl", distinct_records(12))
    db = tmp_path / "run.db"
    with FakeOpenAI(delay_s=0.3) as fake:
        first = FakeScorer().__enter__()
        proc = R.start(cmd(fake, [first], inp, db, tmp_path / "out.jsonl"))
        assert R.wait_for(lambda: len(first.records) >= 3, timeout=120), "the scorer scored nothing"
        first.kill()
        R.time.sleep(3)
        with FakeScorer(port=int(first.url.rsplit(":", 1)[1])) as again:
            stdout, stderr = proc.communicate(timeout=300)
    assert proc.returncode == 0, stderr
    assert R.query(db, "select distinct status from record") == [("done",)]
    assert "SCORERS DOWN: no scorer answers" in stdout and f"the scorer {first.url} answers again after" in stdout
    assert again.records
