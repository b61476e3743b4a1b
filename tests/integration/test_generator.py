"""The generator client against a real loopback server: retries, `n` fallback, rate limit."""

import random
import time

import pytest

from agents.config import GeneratorConfig, RetryPolicy
from agents.breaker import CircuitBreaker
from agents.errors import EndpointError, RetryableError
from agents.generator import Generator
from agents.stats import Stats
from tests.support.fake_openai import FakeOpenAI

MSGS = [{"role": "user", "content": "<task>\nq\n</task>"}]


def gen(url, **kw) -> Generator:
    cfg = GeneratorConfig(endpoint=url, retry=RetryPolicy(max_retries=kw.pop("retries", 3), base_s=0.01, max_s=0.05), **kw)
    return Generator(cfg, Stats(), random.Random(0))


async def test_resolves_the_model_and_retries_429_and_5xx():
    with FakeOpenAI(faults=[429, 500, 503]) as fake:
        g = gen(fake.url)
        await g.start()
        assert g.model == "fake-model"  # the 429/500/503 hit models.list and were retried
        out = await g.generate(MSGS, "", 2, ["</refine>"])
        assert len(out) == 2 and g.stats.retries == 3
        await g.aclose()


async def test_gives_up_after_max_retries_and_does_not_retry_client_errors():
    with FakeOpenAI(faults=[500, 500, 500]) as fake:
        g = gen(fake.url, model="m", retries=2)
        with pytest.raises(EndpointError, match="gave up after 2 retries"):
            await g.generate(MSGS, "", 1, [])
        fake.faults[:] = [401]
        with pytest.raises(EndpointError, match="api-key") as err:
            await g.generate(MSGS, "", 1, [])
        assert err.value.status == 401
        await g.aclose()


async def test_a_request_sent_while_the_endpoint_was_down_keeps_its_retries():
    """Its failure may arrive after another request's success closed the breaker: it was still
    the outage, not this request's own failure (a race the endpoint-down fault test hit)."""
    g = gen("http://127.0.0.1:9/v1", model="m", retries=0)
    g.breaker = CircuitBreaker(threshold=1, cooldown_s=0.0)
    g.breaker.record_failure(time.monotonic())  # down, and its cooldown is already over
    calls = []

    async def call():
        calls.append(g.breaker.is_open())
        if len(calls) == 1:
            g.breaker.record_success()  # meanwhile another request succeeded
            raise RetryableError("HTTP 503 from the endpoint", 503)
        return "ok"

    assert await g._with_retries(call) == "ok" and len(calls) == 2
    await g.aclose()


async def test_falls_back_to_parallel_requests_when_n_is_ignored():
    with FakeOpenAI(supports_n=False) as fake:
        g = gen(fake.url, model="m")
        out = await g.generate(MSGS, "", 3, ["</refine>"])
        assert len(out) == 3
        out = await g.generate(MSGS, "", 2, ["</refine>"])
        assert len(out) == 2
        assert [r.n for r in fake.log] == [1, 1, 1, 1, 1]  # 1 with n=3 ignored, 2 more; then 2 singles
        await g.aclose()


async def test_rate_limit_spaces_requests():
    with FakeOpenAI() as fake:
        g = gen(fake.url, model="m", rps=4.0)
        t0 = time.monotonic()
        for _ in range(9):
            await g.generate(MSGS, "", 1, [])
        assert time.monotonic() - t0 >= 1.5  # 9 requests at 4/s cannot finish sooner (a lower bound only)
        await g.aclose()


def test_backoff_is_exponential_jittered_capped_and_honours_retry_after():
    p = RetryPolicy(max_retries=5, base_s=1.0, max_s=10.0)
    assert p.wait_s(1, None, 0.5) == 0.5
    assert p.wait_s(3, None, 0.5) == 2.0
    assert p.wait_s(10, None, 0.999) < 10.0
    assert p.wait_s(1, 7.0, 0.1) == 7.0 and p.wait_s(1, 99.0, 0.1) == 10.0
