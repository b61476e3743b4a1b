"""Several generator endpoints: requests go to the least loaded, one endpoint down moves its
share to the others, and only all of them down stops the run. Real servers over loopback HTTP."""

import asyncio
import random
import subprocess
import sys

import pytest

from agents.config import GeneratorConfig, RetryPolicy
from agents.errors import ConfigError, FatalEndpointError
from agents.generation.breaker import CircuitBreaker
from agents.generation.generator import Generator
from agents.generation.router import Router
from agents.watch.stats import Stats
from tests.integration.test_faults import many_records
from tests.integration.test_generator import MSGS
from tests.support import runner as R
from tests.support.fake_openai import FakeOpenAI
from tests.support.fake_scorer import FakeScorer


def router(*urls, retries=3, breaker=None, ceilings=(), log=lambda line: None) -> Router:
    stats, rng = Stats(), random.Random(0)
    policy = RetryPolicy(max_retries=retries, base_s=0.01, max_s=0.05)
    ceilings = ceilings or (None,) * len(urls)
    gens = [Generator(GeneratorConfig(endpoint=u, model="m", retry=policy, max_in_flight=c), stats, rng)
            for u, c in zip(urls, ceilings)]
    for g in gens:
        g.breaker = breaker() if breaker else g.breaker
    return Router(gens, policy, stats, rng, log=log)


async def test_requests_go_to_the_endpoint_with_the_fewest_in_flight():
    with FakeOpenAI(delay_s=0.3) as a, FakeOpenAI(delay_s=0.3) as b:
        r = router(a.url, b.url)
        await asyncio.gather(*(r.generate(MSGS, "", 1, []) for _ in range(10)))
        assert (len(a.log), len(b.log)) == (5, 5)
        assert [e.requests for e in r.stats.endpoints] == [5, 5]
        await r.aclose()


async def test_a_failing_endpoint_moves_its_requests_to_the_other():
    with FakeOpenAI(faults=[503] * 100) as down, FakeOpenAI() as up:
        r = router(down.url, up.url, retries=2, breaker=lambda: CircuitBreaker(threshold=2, cooldown_s=30))
        out = await asyncio.gather(*(r.generate(MSGS, "", 1, []) for _ in range(8)))
        assert len(out) == 8 and len(up.log) == 8
        assert len(down.log) <= 3  # until its breaker opened: no more requests there
        assert [e.state for e in r.stats.endpoints] == ["down", "up"]
        await r.aclose()


async def test_a_failed_request_is_retried_on_another_endpoint_before_any_breaker_opens():
    with FakeOpenAI(faults=[503]) as a, FakeOpenAI() as b:
        r = router(a.url, b.url)
        [out] = await r.generate(MSGS, "", 1, [])
        assert out.text and (len(a.log), len(b.log)) == (0, 1) and a.faults == []  # the 503 came from a
        assert [e.state for e in r.stats.endpoints] == ["up", "up"]
        await r.aclose()


async def test_all_endpoints_down_stop_the_run_once_the_breakers_give_up():
    with FakeOpenAI(faults=[503] * 1000) as a, FakeOpenAI(faults=[503] * 1000) as b:
        r = router(a.url, b.url, retries=1000,
                   breaker=lambda: CircuitBreaker(threshold=2, cooldown_s=0.05, max_cooldown_s=0.1, max_down_s=0.5))
        with pytest.raises(FatalEndpointError, match=rf"all 2 endpoints {a.url}, {b.url} have failed every request"):
            await r.generate(MSGS, "", 1, [])
        await r.aclose()


async def test_endpoints_that_differ_on_the_prefill_are_refused_at_start():
    with FakeOpenAI(flavor="vllm") as a, FakeOpenAI(flavor="openai") as b:
        r = router(a.url, b.url)
        with pytest.raises(ConfigError, match=rf"{a.url} continue a prefilled turn, {b.url} cannot"):
            await r.start()
        await r.aclose()


def test_a_run_on_two_endpoints_finishes_on_one_when_the_other_is_killed(tmp_path):
    procs = [subprocess.Popen([sys.executable, "-m", "tests.support.fake_openai", "--port", "0", "--delay-s", "0.3",
                               "--model", name], cwd=R.ROOT, env=R.env(None), stdout=subprocess.PIPE, text=True)
             for name in ("a", "b")]
    try:
        urls = [p.stdout.readline().strip().removeprefix("REER_URL=") for p in procs]
        inp = R.write_input(tmp_path / "in.jsonl", many_records(12))
        db, out = tmp_path / "run.db", tmp_path / "out.jsonl"
        with FakeScorer() as scorer:
            cmd = R.run_cmd(urls[0], inp, db, out, "fake", "--endpoint", urls[1], "--model", "a", "--model", "b",
                            "--scorer-url", scorer.url, "--max-steps", "2", "--concurrency", "4")
            run = R.start(cmd)
            assert R.wait_for(lambda: R.query(db, "select count(*) from node where model = 'a'")[0][0] >= 4, 120)
            procs[0].kill()
            stdout, stderr = run.communicate(timeout=300)
        assert run.returncode == 0, stderr
        assert R.query(db, "select distinct status from record") == [("done",)]
        by_model = dict(R.query(db, "select model, count(*) from node group by model"))
        assert by_model["a"] >= 4 and by_model["b"] > by_model["a"], by_model
        assert f"the endpoint {urls[0]} looks down" in stdout and "its requests go to the 1 other endpoints" in stdout
        assert f"generator: a at {urls[0]}" in stdout and f"generator: b at {urls[1]}" in stdout
    finally:
        for p in procs:
            p.kill()
            p.wait()
