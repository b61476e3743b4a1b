"""PostgreSQL cut at a chosen phase of a run, not wherever a timer falls: the proxy cuts when the
worker sends a given statement (``PgProxy.cut_at``). At a claim, inside a step's transaction
(before its commit, or with its commit landed and the answer lost), during the heartbeats while
every record waits on a generation, and while the results are written to --out. Each time the
run rides the cut out (or, past --store-wait, says how to go on), and every generation the fake
endpoint produced is stored once: none is requested twice."""

import sys
import time

import pytest

from store import shown
from tests.integration.test_faults import many_records
from tests.integration.test_store_outage import N, NODES, cmd, generated, spills
from tests.support import runner as R
from tests.support.fake_openai import FakeOpenAI
from tests.support.fake_scorer import FakeScorer
from tests.support.pg import count, pg_schema, q
from tests.support.pg_proxy import PgProxy

# Statements as SQLAlchemy sends them through psycopg: the markers the proxy cuts at.
CLAIM = b"FOR UPDATE SKIP LOCKED"
STEP = b"INSERT INTO step"
COMMIT = b"COMMIT"
HEARTBEAT = b"UPDATE worker SET expires_at=$1::TIMESTAMP WITH TIME ZONE WHERE"
EXPORT_NODES = b"WHERE node.record_id IN ($1"  # the results' read of a chunk's nodes, nothing else's

CUT_S = 2.0  # a short cut: over before --store-wait (300 s), longer than a generation (0.3 s)


@pytest.fixture
def url():
    with pg_schema("p") as u:
        yield u


@pytest.fixture
def proxy():
    with PgProxy() as p:
        yield p


def pending(url: str) -> int:
    return q(url, "select count(*) from record where status = 'pending'")[0][0]


def completes_storing_each_generation_once(proc, fake, url: str, proxy: PgProxy) -> str:
    """The run, once the proxy is restored, ends well with every record done, each step and
    generation stored once and none requested twice; its output."""
    stdout, stderr = proc.communicate(timeout=300)
    total = generated(fake)
    assert proc.returncode == 0, stdout + stderr
    assert "STORE DOWN, retrying (0 s of 300)" in stdout and "store back after " in stdout, stdout
    assert q(url, "select status, count(*) from record group by status") == [("done", N)]
    assert count(url, "node") == NODES and count(url, "step") == 2 * N
    assert total == NODES, (total, NODES)
    assert not spills(proxy.url(url))
    return stdout


def started(tmp_path, fake, scorer, url, proxy, *extra: str, steps: int = 1):
    """A run through the proxy, once it has stored ``steps`` steps (mid-run)."""
    inp = R.write_input(tmp_path / "in.jsonl", many_records(N))
    proc = R.start(cmd(fake, scorer, inp, proxy.url(url), tmp_path / "out.jsonl", *extra))
    assert R.wait_for(lambda: count(url, "step") >= steps, timeout=120), \
        proc.stderr.read() if proc.poll() is not None else "no step stored in time"
    return proc


@pytest.mark.parametrize("reply", [False, True], ids=["before-the-server", "commit-landed-unseen"])
def test_a_cut_at_a_claim(tmp_path, url, proxy, reply):
    """A claim the server never saw claims nothing; one whose commit landed unseen marked records
    this worker's that it is not searching: it takes them again, so none is stranded."""
    with FakeScorer() as scorer, FakeOpenAI(delay_s=0.3) as fake:
        proc = started(tmp_path, fake, scorer, url, proxy)
        before = pending(url)
        cut = proxy.cut_at(CLAIM, *[COMMIT] * reply, reply=reply)
        assert cut.wait(60), "no claim in time"
        if reply:
            assert pending(url) < before, "the lost claim took no record: the test proved nothing"
        time.sleep(CUT_S)
        proxy.restore()
        completes_storing_each_generation_once(proc, fake, url, proxy)


@pytest.mark.parametrize("reply", [False, True], ids=["before-its-commit", "commit-landed-unseen"])
def test_a_cut_inside_a_steps_transaction(tmp_path, url, proxy, reply):
    """Cut with the step's row sent inside its open transaction (rolled back: the retry writes it),
    or with its commit landed and the answer lost (the retry finds it stored: never twice)."""
    with FakeScorer() as scorer, FakeOpenAI(delay_s=0.3) as fake:
        proc = started(tmp_path, fake, scorer, url, proxy)
        before = count(url, "step")
        cut = proxy.cut_at(STEP, *[COMMIT] * reply, reply=reply)
        assert cut.wait(60), "no step stored in time"
        if reply:
            assert count(url, "step") > before, "the step's commit did not land: the test proved nothing"
        time.sleep(CUT_S)
        proxy.restore()
        completes_storing_each_generation_once(proc, fake, url, proxy)


def test_a_cut_during_heartbeats_keeps_the_leases(tmp_path, url, proxy):
    """Every record waits on a generation, so the heartbeat alone meets the cut; the cut outlasts
    the lease (2 s). The store back, the heartbeat renews it before any record writes: the worker
    still holds its records, none is taken over or generated again."""
    with FakeScorer() as scorer, FakeOpenAI(delay_s=0.3) as fake:
        proc = started(tmp_path, fake, scorer, url, proxy, "--lease-s", "2", steps=2)
        fake.hang_after = len(fake.log)  # the requests from now on wait until answer_again
        assert R.wait_for(lambda: fake.held == 4, timeout=30), "the records do not all wait on a generation"
        nodes = count(url, "node")
        cut = proxy.cut_at(HEARTBEAT)
        assert cut.wait(30), "no heartbeat"
        lease = "select count(*) from worker where ended_at is null and expires_at > now()"
        assert R.wait_for(lambda: q(url, lease)[0][0] == 0, timeout=30)  # the lease ran out meanwhile
        proxy.restore()
        assert R.wait_for(lambda: q(url, lease)[0][0] == 1, timeout=30), "the lease was not renewed"
        [(worker,)] = q(url, "select id from worker where ended_at is null")
        held = q(url, f"select count(*) from record where status = 'running' and worker_id = {worker}")
        assert held == [(4,)] and count(url, "node") == nodes  # its records still its own; nothing else written
        fake.answer_again()
        stdout = completes_storing_each_generation_once(proc, fake, url, proxy)
    assert "taken over" not in stdout


def test_a_short_cut_while_the_results_are_written(tmp_path, url, proxy):
    with FakeScorer() as scorer, FakeOpenAI(delay_s=0.1) as fake:
        proc = started(tmp_path, fake, scorer, url, proxy)
        cut = proxy.cut_at(EXPORT_NODES)
        assert cut.wait(120), "the results were not written"
        time.sleep(CUT_S)
        proxy.restore()
        stdout = completes_storing_each_generation_once(proc, fake, url, proxy)
    assert f"wrote {N} records to " in stdout
    assert [r["id"] for r in R.read_jsonl(tmp_path / "out.jsonl")] == [f"r{i}" for i in range(N)]


def test_a_cut_past_the_wait_while_the_results_are_written_says_how_to_write_them(tmp_path, url, proxy):
    out = tmp_path / "out.jsonl"
    with FakeScorer() as scorer, FakeOpenAI(delay_s=0.1) as fake:
        inp = R.write_input(tmp_path / "in.jsonl", many_records(N))
        proc = R.start(cmd(fake, scorer, inp, proxy.url(url), out, "--store-wait", "2"))
        cut = proxy.cut_at(EXPORT_NODES)
        stdout, stderr = proc.communicate(timeout=300)
        total = generated(fake)
    assert cut.is_set() and proc.returncode == 2, stdout + stderr
    [line] = stderr.strip().splitlines()
    assert line.startswith("reer: error: database postgresql+psycopg://"), line
    assert f"while the results were written to {out}. The run is stored and nothing is lost." in line, line
    assert f"then write them with reer export --db '{shown(proxy.url(url))}' --out {out}" in line, line
    assert not out.exists() and not list(tmp_path.glob("out.jsonl.*"))  # no half-written file left
    assert q(url, "select status, count(*) from record group by status") == [("done", N)]
    assert count(url, "node") == NODES and total == NODES
    assert not spills(proxy.url(url))

    proxy.restore()
    export = R.run([sys.executable, "-m", "agents.inspect.export", "--db", proxy.url(url), "--out", str(out)])
    assert export.returncode == 0, export.stdout + export.stderr
    assert [r["id"] for r in R.read_jsonl(out)] == [f"r{i}" for i in range(N)]
