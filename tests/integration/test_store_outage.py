"""PostgreSQL going away mid-run, as a server restart, a failover or a network hiccup does: the
connection cut at a loopback proxy (tests/support/pg_proxy.py) and restored. A worker rides it
out: an outage within --store-wait costs no generation and needs no person; a longer one stops
the run with one line and a spill file, and the same command stores what it holds. Either way,
every generation the fake endpoint produced ends up stored: none is requested twice."""

import time
from pathlib import Path

import pytest

from agents.search.spill import spill_files
from tests.integration.test_faults import many_records
from tests.support import runner as R
from tests.support.fake_openai import FakeOpenAI
from tests.support.fake_scorer import FakeScorer
from tests.support.pg import count, pg_schema, q
from tests.support.pg_proxy import PgProxy

N = 12
NODES = N * 5  # a draft and 2 steps x 2 candidates per record


@pytest.fixture
def url():
    with pg_schema("o") as u:
        yield u


@pytest.fixture
def proxy():
    with PgProxy() as p:
        yield p


def cmd(fake, scorer, inp, url, out, *extra):
    return R.run_cmd(fake.url, inp, url, out, "fake", "--scorer-url", scorer.url, "--max-steps", "2",
                     "--concurrency", "4", "--lease-s", "5", *extra)


def generated(fake) -> int:
    return fake.choices_generated("draft") + fake.choices_generated("edit")


def spills(url: str) -> list[Path]:
    return [p if p.is_absolute() else R.ROOT / p for p in spill_files(url)]


def cut_once_searching(url: str, proxy: PgProxy, proc) -> None:
    """Cut the database off once the run has stored a few steps and has requests in flight."""
    assert R.wait_for(lambda: count(url, "step") >= 2, timeout=120), \
        proc.stderr.read() if proc.poll() is not None else "no step stored in time"
    proxy.cut()


def test_a_short_outage_costs_nothing_and_needs_no_one(tmp_path, url, proxy):
    inp = R.write_input(tmp_path / "in.jsonl", many_records(N))
    with FakeScorer() as scorer, FakeOpenAI(delay_s=0.3) as fake:
        proc = R.start(cmd(fake, scorer, inp, proxy.url(url), tmp_path / "out.jsonl"))
        cut_once_searching(url, proxy, proc)
        asked = len(fake.log)
        time.sleep(4)  # longer than a generation: some arrive while the store is away
        during = len(fake.log) - asked
        proxy.restore()
        stdout, stderr = proc.communicate(timeout=300)
        total = generated(fake)
    assert proc.returncode == 0, stdout + stderr
    assert "STORE DOWN, retrying (0 s of 300)" in stdout and "store back after " in stdout, stdout
    assert during > 0, "nothing was generated while the store was away: the test proved nothing"
    assert q(url, "select status, count(*) from record group by status") == [("done", N)]
    assert count(url, "node") == NODES and count(url, "step") == 2 * N
    assert total == NODES, (total, NODES)  # every generation stored, none requested twice
    assert not spills(proxy.url(url))


def test_an_outage_past_the_wait_spills_and_the_same_command_stores_it(tmp_path, url, proxy):
    inp = R.write_input(tmp_path / "in.jsonl", many_records(N))
    with FakeScorer() as scorer, FakeOpenAI(delay_s=0.3) as fake:
        run = cmd(fake, scorer, inp, proxy.url(url), tmp_path / "out.jsonl", "--store-wait", "3")
        proc = R.start(run)
        cut_once_searching(url, proxy, proc)
        stdout, stderr = proc.communicate(timeout=300)
        assert proc.returncode == 2, stdout + stderr
        [line] = stderr.strip().splitlines()
        assert line.startswith("reer: error: database postgresql+psycopg://"), line
        assert "then run the same command" in line and "generations held while it was down are kept in " in line
        [spill] = spills(proxy.url(url))
        assert str(spill.name) in line
        held = len(spill.read_text().splitlines())
        assert held > 0
        stored_before = count(url, "node")
        assert generated(fake) == stored_before + held  # what was not stored is all in the spill file

        proxy.restore()
        again = R.run(run)
        total = generated(fake)
    assert again.returncode == 0, again.stdout + again.stderr
    assert f"recovered {held} generations held while the store was down" in again.stdout, again.stdout
    assert not spills(proxy.url(url))
    assert q(url, "select status, count(*) from record group by status") == [("done", N)]
    assert count(url, "node") == NODES and count(url, "step") == 2 * N
    assert total == NODES, (total, NODES)  # none requested twice, across both runs


def test_down_at_start_fails_at_once_with_one_line(tmp_path, url, proxy):
    inp = R.write_input(tmp_path / "in.jsonl", many_records(2))
    proxy.cut()
    with FakeScorer() as scorer, FakeOpenAI() as fake:
        p = R.run(cmd(fake, scorer, inp, proxy.url(url), tmp_path / "out.jsonl"), timeout=120)
        asked = generated(fake)
    assert p.returncode == 2, p.stdout + p.stderr
    [line] = p.stderr.strip().splitlines()
    # the proxy drops the connection; the driver says so as "closed" or "broken pipe", by timing
    assert line.startswith("reer: error: database ") and ("closed the connection" in line or "Broken pipe" in line), line
    assert asked == 0 and not spills(proxy.url(url))


def test_ctrl_c_during_the_wait_spills_and_the_same_command_stores_it(tmp_path, url, proxy):
    inp = R.write_input(tmp_path / "in.jsonl", many_records(N))
    with FakeScorer() as scorer, FakeOpenAI(delay_s=0.3) as fake:
        run = cmd(fake, scorer, inp, proxy.url(url), tmp_path / "out.jsonl")
        proc = R.start(run)
        cut_once_searching(url, proxy, proc)
        time.sleep(2)  # the requests in flight come back to a store that is away
        proc.send_signal(R.signal.SIGINT)
        stdout, stderr = proc.communicate(timeout=120)
        assert proc.returncode == 2, stdout + stderr
        [line] = stderr.strip().splitlines()
        [spill] = spills(proxy.url(url))
        assert f"generations held while it was down are kept in {spill.relative_to(R.ROOT)}" in line, line
        proxy.restore()
        again = R.run(run)
        total = generated(fake)
    assert again.returncode == 0, again.stdout + again.stderr
    assert "recovered " in again.stdout and not spills(proxy.url(url))
    assert count(url, "node") == NODES and total == NODES, (count(url, "node"), total)


def test_one_worker_cut_off_while_another_goes_on_no_record_stored_twice(tmp_path, url, proxy):
    inp = R.write_input(tmp_path / "in.jsonl", many_records(N))
    lease = ["--lease-s", "3"]
    with FakeScorer() as scorer, FakeOpenAI(delay_s=0.3) as fake:
        cut_off = R.start(cmd(fake, scorer, inp, proxy.url(url), tmp_path / "a.jsonl", *lease))
        other = R.start(cmd(fake, scorer, inp, url, tmp_path / "b.jsonl", *lease))
        cut_once_searching(url, proxy, cut_off)
        time.sleep(8)  # past the cut-off worker's lease: the other takes its records over
        proxy.restore()
        results = [p.communicate(timeout=300) for p in (cut_off, other)]
        total = generated(fake)
    assert [cut_off.returncode, other.returncode] == [0, 0], [err for _, err in results]
    assert "STORE DOWN, retrying" in results[0][0] and "store back after " in results[0][0]
    assert "taken over from pid " in results[1][0], results[1][0]
    assert q(url, "select status, count(*) from record group by status") == [("done", N)]
    assert count(url, "node") == NODES and count(url, "step") == 2 * N
    # what the cut-off worker generated for records taken over meanwhile is all that is lost:
    # at most one request per record it had in flight
    assert total - NODES <= 4 * 2, total
