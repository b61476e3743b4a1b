"""Workers sharing one run on PostgreSQL, as a user starts them: real processes over loopback
HTTP. Every record is done once, nothing stored twice, no more requests than one worker makes;
a worker killed mid-run has its records finished by the others once its lease runs out."""

import re

import pytest

from tests.integration.test_faults import many_records
from tests.support import runner as R
from tests.support.fake_openai import FakeOpenAI
from tests.support.fake_scorer import FakeScorer
from tests.support.pg import count, pg_schema, q

N = 30


@pytest.fixture
def url():
    with pg_schema("w") as u:
        yield u


def worker_cmd(fake, scorer, inp, url, out, *extra):
    return R.run_cmd(fake.url, inp, url, out, "fake", "--scorer-url", scorer.url, "--max-steps", "2",
                     "--concurrency", "4", *extra)


def requests(fake) -> tuple[int, int]:
    return fake.count("draft"), fake.choices_generated("edit")


def test_three_workers_share_a_run_each_record_done_once_with_one_workers_requests(tmp_path, url):
    inp = R.write_input(tmp_path / "in.jsonl", many_records(N))
    with FakeScorer() as scorer:
        with FakeOpenAI(delay_s=0.3) as alone:
            single = R.run(worker_cmd(alone, scorer, inp, tmp_path / "single.db", tmp_path / "single.jsonl"))
            assert single.returncode == 0, single.stderr
        with FakeOpenAI(delay_s=0.3) as fake:
            outs = [tmp_path / f"w{i}.jsonl" for i in range(3)]
            procs = [R.start(worker_cmd(fake, scorer, inp, url, out)) for out in outs]  # the same instant
            results = [p.communicate(timeout=300) for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0], [err for _, err in results]
    assert q(url, "select count(*) from run") == [(1,)]
    assert q(url, "select status, count(*) from record group by status") == [("done", N)]
    finishers = q(url, "select worker_id, count(*) from record group by worker_id")
    assert len(finishers) == 3, finishers  # each worker finished some
    assert q(url, "select count(*) from step") == [(2 * N,)]
    assert q(url, "select count(*) from node") == [(N * 5,)]  # a draft and 2 x 2 candidates each, once
    assert requests(fake) == requests(alone) == (N, 4 * N)
    # each worker's --out holds what it finished; together, the run, once
    rows = [r["id"] for out in outs for r in R.read_jsonl(out)]
    assert sorted(rows) == sorted(f"r{i}" for i in range(N))
    assert all("other workers shared the run" in out for out, _ in results)
    assert any(re.search(r"joined the run in .* beside (1 other live worker|2 other live workers): ", out)
               for out, _ in results)
    export = R.run([R.sys.executable, "-m", "agents.inspect.export", "--db", url, "--out", str(tmp_path / "all.jsonl")])
    assert export.returncode == 0, export.stderr
    assert [r["id"] for r in R.read_jsonl(tmp_path / "all.jsonl")] == [f"r{i}" for i in range(N)]


def test_a_killed_workers_records_are_finished_by_the_others_after_its_lease(tmp_path, url):
    inp = R.write_input(tmp_path / "in.jsonl", many_records(N))
    lease = ["--lease-s", "3"]
    with FakeScorer() as scorer, FakeOpenAI(delay_s=0.4) as fake:
        victim = R.start(worker_cmd(fake, scorer, inp, url, tmp_path / "victim.jsonl", *lease))
        assert R.wait_for(lambda: count(url, "step") >= 2, timeout=120), "no step stored"
        others = [R.start(worker_cmd(fake, scorer, inp, url, tmp_path / f"w{i}.jsonl", *lease)) for i in range(2)]
        assert R.wait_for(lambda: count(url, "worker") == 3, timeout=60)
        R.kill(victim)
        [victim_id] = q(url, "select id from worker order by id limit 1")[0]
        held = {k for k, in q(url, f"select key from record where worker_id = {victim_id} and status = 'running'")}
        kept = set(q(url, "select id, record_id, step, idx from node"))
        results = [p.communicate(timeout=300) for p in others]
        generated = fake.choices_generated("draft") + fake.choices_generated("edit")
    assert [p.returncode for p in others] == [0, 0], [err for _, err in results]
    assert held, "the killed worker held no record"
    assert q(url, "select status, count(*) from record group by status") == [("done", N)]
    printed = "".join(out for out, _ in results)
    for key in held:
        assert f"record {key}: taken over from pid {victim.pid} on " in printed, printed
    # taken over where it stopped: what was stored stays, and nothing is stored twice
    assert kept <= set(q(url, "select id, record_id, step, idx from node"))
    stored = q(url, "select count(*) from node")[0][0]
    assert stored == N * 5 and q(url, "select count(*) from step") == [(2 * N,)]
    # what the killed worker had in flight (4 records, 2 choices each at most) is all that was
    # generated and not stored: no stored step was generated again
    assert generated - stored <= 4 * 2, (generated, stored)
