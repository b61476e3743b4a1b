"""Hung parts: an endpoint or scorer that accepts connections and never answers, over real
loopback servers (``tests.support.hung``, and fakes that answer N requests, then hang). Hung from
the start it counts as not answering at its probe; hanging mid-run its requests go past their
deadline and move to the others; answering again it takes work again; with every part hung the
run says so."""

import asyncio
import random

from agents.config import Deadlines, GeneratorConfig, RetryPolicy, Sampling
from agents.generation.breaker import CircuitBreaker
from agents.generation.generator import Generator
from agents.generation.router import Router
from agents.services import scorers
from agents.services.scorers import ScorerPool
from agents.watch.stats import Stats
from scorer import ScorerClient, ScorerUnavailable
from tests.integration.test_generator import MSGS
from tests.integration.test_scorer_pool import cmd, distinct_records
from tests.support import runner as R
from tests.support.fake_openai import FakeOpenAI
from tests.support.fake_scorer import FakeScorer
from tests.support.hung import HungServer

QUICK = Deadlines(probe_s=0.5, floor_s=0.5)


def router(*urls, lines: list[str]) -> Router:
    stats, rng = Stats(), random.Random(0)
    policy = RetryPolicy(max_retries=3, base_s=0.01, max_s=0.05)
    gens = [Generator(GeneratorConfig(endpoint=u, model="m", retry=policy, sampling=Sampling(max_tokens=64)),
                      stats, rng, breaker=CircuitBreaker(cooldown_s=0.1, max_cooldown_s=0.2)) for u in urls]
    return Router(gens, policy, stats, rng, log=lines.append, deadlines=QUICK)


async def until(cond, timeout_s: float = 120.0) -> None:
    """Wait for ``cond()``; a generous bound, so that a broken run fails instead of hanging."""
    for _ in range(int(timeout_s / 0.05)):
        if cond():
            return
        await asyncio.sleep(0.05)
    raise AssertionError("never happened")


async def many(r: Router, n: int, at_once: int = 4) -> list:
    gate = asyncio.Semaphore(at_once)

    async def one():
        async with gate:
            return await r.generate(MSGS, "", 1, [])

    return await asyncio.gather(*(one() for _ in range(n)))


async def test_an_endpoint_hung_from_the_start_fails_its_preflight_and_the_run_starts_with_the_other():
    lines: list[str] = []
    with HungServer("/v1") as hung, FakeOpenAI() as up:
        r = router(hung.url, up.url, lines=lines)
        await r.start()
        assert r.live == [r.endpoints[1]] and hung.accepted >= 1
        assert len(await many(r, 8)) == 8 and up.count("draft") == 8
        assert any(line.startswith(f"endpoint {hung.url}: no answer for") for line in lines), lines
        await r.aclose()


async def test_an_endpoint_hanging_mid_run_has_its_requests_moved_and_takes_work_again_when_it_answers():
    lines: list[str] = []
    with FakeOpenAI(hang_after=4) as a, FakeOpenAI(delay_s=0.05) as b:
        r = router(a.url, b.url, lines=lines)
        await r.start()
        assert len(await many(r, 30)) == 30  # every request answered, the held ones by b
        assert a.count("draft") == 3 and r.stats.endpoints[0].state == "hung"  # 4 answered, with the preflight
        assert r.stats.endpoints[0].moved >= 1
        assert any(line.startswith(f"endpoint {a.url}: no answer for") and "moved" in line for line in lines), lines
        a.answer_again()
        for _ in range(100):  # a request, held or new, answered there: its breaker closes
            await many(r, 4)
            if r.stats.endpoints[0].state == "up":
                break
        assert any(f"the endpoint {a.url} is back after" in line for line in lines), lines
        await r.aclose()


async def test_the_only_endpoint_hanging_makes_requests_wait_saying_so_and_go_on_when_it_answers():
    lines: list[str] = []
    with FakeOpenAI(hang_after=3) as a:
        r = router(a.url, lines=lines)
        await r.start()
        pending = asyncio.ensure_future(many(r, 8))
        await until(lambda: r.stats.endpoint_down)  # said on the dashboard: every request waits
        assert not pending.done() and any(line.startswith(f"endpoint {a.url}: no answer for") for line in lines)
        a.answer_again()
        assert len(await pending) == 8 and not r.stats.endpoint_down
        await r.aclose()


async def test_a_long_generation_at_the_seen_rate_is_not_taken_for_a_hang():
    """Seen: short answers; then one as long as asked for at the same time per token."""
    lines: list[str] = []
    with FakeOpenAI(delay_s=0.02) as a:
        r = router(a.url, lines=lines)
        await r.start()
        await many(r, 10)
        e = r.endpoints[0]
        tokens = e.cfg.sampling.max_tokens
        per_token = r.estimates[e].expected_s("edit", 1, 1)
        assert r._deadline_s(e, "edit", False, 1, tokens) >= tokens * per_token  # type: ignore[operator]
        assert not any("no answer" in line for line in lines)
        await r.aclose()


async def test_a_scorer_hung_from_the_start_fails_its_health_probe_within_its_deadline():
    with HungServer() as hung:
        client = ScorerClient(hung.url, health_timeout_s=0.3)
        try:
            await client.health()
        except ScorerUnavailable as exc:
            assert f"the scorer at {hung.url} accepted the connection but gave no answer within" in str(exc)
        else:
            raise AssertionError("a hung scorer answered its health probe")
        finally:
            await client.aclose()


async def test_a_scorer_hanging_mid_run_has_its_records_moved_and_takes_them_back_when_it_answers(monkeypatch):
    monkeypatch.setattr(scorers, "DOWN_S", 0.2)
    lines: list[str] = []
    with FakeScorer(hang_after=3) as a, FakeScorer() as b:
        clients = [ScorerClient(a.url), ScorerClient(b.url)]
        pool = ScorerPool([(a.url, clients[0]), (b.url, clients[1])], lines.append, deadlines=QUICK)
        for i in range(6):  # answered one at a time: the latencies the deadlines follow
            await pool.score_many(f"w{i}", ["t"], "a", "en")
        out = await asyncio.gather(*(pool.score_many(f"q{i}", ["t"], "a", "en") for i in range(24)))
        assert len(out) == 24 and a.calls >= 3
        assert pool.moved[a.url] >= 1 and sum(b.records.values()) >= 24
        assert pool.states() == {a.url: f"hung, {pool.moved[a.url]} moved", b.url: "up"}  # the dashboard's rows
        assert any(line.startswith(f"scorer {a.url}: no answer for") and "moved" in line for line in lines), lines
        a.answer_again()
        before = sum(a.records.values())
        for i in range(10):
            await asyncio.sleep(0.25)
            await asyncio.gather(*(pool.score_many(f"r{i}-{j}", ["t"], "a", "en") for j in range(8)))
        assert sum(a.records.values()) > before and any("answers again" in line for line in lines), lines
        for c in clients:
            await c.aclose()


def test_a_run_with_one_of_two_scorers_hung_from_the_start_completes_on_the_other(tmp_path):
    inp = R.write_input(tmp_path / "in.jsonl", distinct_records(8))
    db = tmp_path / "run.db"
    with FakeOpenAI(delay_s=0.3) as fake, HungServer() as hung, FakeScorer() as live:  # a run longer than the probe
        p = R.run(cmd(fake, [hung, live], inp, db, tmp_path / "out.jsonl", "--probe-timeout", "1"), timeout=300)
    assert p.returncode == 0, p.stderr
    assert R.query(db, "select distinct status from record") == [("done",)]
    assert f"waiting for the scorer at {hung.url} to answer (it accepts connections but gives no answer" in p.stdout


def test_a_run_with_one_of_two_scorers_hanging_mid_run_completes_on_the_other(tmp_path):
    inp = R.write_input(tmp_path / "in.jsonl", distinct_records(16))
    db = tmp_path / "run.db"
    with FakeOpenAI(delay_s=0.1) as fake, FakeScorer(hang_after=4) as a, FakeScorer() as b:
        p = R.run(cmd(fake, [a, b], inp, db, tmp_path / "out.jsonl", "--hang-floor", "1"), timeout=300)
    assert p.returncode == 0, p.stderr
    assert R.query(db, "select distinct status from record") == [("done",)]
    assert f"scorer {a.url}: no answer for" in p.stdout


def test_a_run_with_one_of_two_endpoints_hung_from_the_start_completes_on_the_other(tmp_path):
    inp = R.write_input(tmp_path / "in.jsonl", distinct_records(8))
    db = tmp_path / "run.db"
    with FakeOpenAI() as fake, HungServer("/v1") as hung, FakeScorer() as s:
        p = R.run(R.run_cmd(fake.url, inp, db, tmp_path / "out.jsonl", "fake", "--endpoint", hung.url,
                            "--scorer-url", s.url, "--max-steps", "1", "--concurrency", "4", "--probe-timeout", "1"),
                  timeout=300)
    assert p.returncode == 0, p.stderr
    assert R.query(db, "select distinct status from record") == [("done",)]
    assert f"endpoint {hung.url}: no answer for 1 s" in p.stdout
