"""The generator client against a real loopback server: retries, `n` fallback, rate limit."""

import random
import time

import pytest

from agents.config import GeneratorConfig, RetryPolicy, Sampling
from agents.errors import ConfigError, EndpointError, FatalEndpointError, RetryableError
from agents.generation.breaker import CircuitBreaker
from agents.generation.generator import Generator, split_evenly
from agents.generation.router import Router
from agents.watch.stats import Stats
from tests.support.fake_openai import FakeOpenAI

MSGS = [{"role": "user", "content": "<task>\nq\n</task>\n<answer>\na\n</answer>"}]  # a draft: faults hit it


def gen(url, **kw) -> Router:
    """One endpoint behind the router that retries its requests, as a run has it."""
    cfg = GeneratorConfig(endpoint=url, retry=RetryPolicy(max_retries=kw.pop("retries", 3), base_s=0.01, max_s=0.05), **kw)
    stats, rng = Stats(), random.Random(0)
    return Router([Generator(cfg, stats, rng)], cfg.retry, stats, rng, log=lambda line: None)


async def test_resolves_the_model_and_retries_429_and_5xx():
    with FakeOpenAI(faults=[429, 500, 503]) as fake:
        g = gen(fake.url)
        await g.start()
        assert g.model == "fake-model"
        out = await g.generate(MSGS, "", 2, ["</refine>"])  # the 429/500/503 hit it and were retried
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
    e = g.endpoints[0]
    e.breaker = CircuitBreaker(threshold=1, cooldown_s=0.0)
    e.breaker.record_failure(time.monotonic())  # down, and its cooldown is already over
    calls = []

    async def call(endpoint):
        calls.append(e.breaker.is_open())
        if len(calls) == 1:
            e.breaker.record_success()  # meanwhile another request succeeded
            raise RetryableError("HTTP 503 from the endpoint", 503)
        return "ok"

    assert await g.send(call, e) == "ok" and len(calls) == 2
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


# --- the preflight and the prefill, against each kind of server ----------------------------

DRAFT = [{"role": "system", "content": "s"}, {"role": "user", "content": "<task>\nq\n</task>\n<answer>\nThe answer.\n</answer>"}]


async def test_vllm_continues_the_prefill_via_continue_final_message_and_samples_as_the_reference():
    with FakeOpenAI(flavor="vllm") as fake:
        g = gen(fake.url)
        info = await g.start(2, [])
        assert (info.prefill, info.n_supported, info.max_tokens_field) == ("continue", True, "max_completion_tokens")
        [out] = await g.generate(DRAFT, "<think>\nAlright", 1, [])
        body = fake.log[-1].body
        assert body["messages"][-1] == {"role": "assistant", "content": "<think>\nAlright"}
        assert body["continue_final_message"] is True and body["add_generation_prompt"] is False
        assert (body["temperature"], body["top_p"], body["max_completion_tokens"]) == (0.8, 0.85, 8000)
        assert "top_k" not in body and fake.log[-1].continued
        assert not out.text.startswith("<think>")  # the continuation only
        await g.aclose()


async def test_reasoning_servers_return_the_thinking_apart_and_it_is_read_there():
    for field in ("reasoning", "reasoning_content"):
        with FakeOpenAI(flavor="vllm", reasoning_field=field) as fake:
            g = gen(fake.url)
            assert (await g.start(1, [])).thinking_field == field
            [out] = await g.generate(DRAFT, "<think>\nAlright", 1, [])
            assert fake.log[-1].continued
            thinking, _, answer = out.text.partition("</think>")
            assert thinking.strip().startswith("the user wants") and answer.strip() == "The answer."
            await g.aclose()


async def test_llamacpp_continues_a_trailing_message_and_gets_single_requests_for_n():
    with FakeOpenAI(flavor="llamacpp") as fake:
        g = gen(fake.url)
        info = await g.start(2, [])
        assert info.prefill == "continue" and not info.n_supported  # n=2 was answered with a 500
        outs = await g.generate(DRAFT, "<think>\nAlright", 2, [])
        assert len(outs) == 2 and [r.n for r in fake.log[-2:]] == [1, 1] and fake.log[-1].continued
        assert all(o.text.startswith(" the user wants") for o in outs)  # the echoed prefill is taken off
        await g.aclose()
    with FakeOpenAI(flavor="llamacpp") as fake:
        g = gen(fake.url, chat_prefill="trailing")
        assert (await g.start(1, [])).prefill == "trailing"
        await g.generate(DRAFT, "<think>\nAlright", 1, [])
        assert "continue_final_message" not in fake.log[-1].body and fake.log[-1].continued
        await g.aclose()


async def test_openai_runs_without_prefill_and_says_why():
    with FakeOpenAI(flavor="openai", model="gpt-4o-mini") as fake:
        g = gen(fake.url)
        info = await g.start(2, [])
        assert info.prefill == "off" and not info.prefills and info.n_supported
        assert "continue_final_message" in info.no_prefill_reason
        await g.generate(DRAFT, "", 1, [])
        body = fake.log[-1].body
        assert set(body) <= {"model", "messages", "temperature", "top_p", "max_completion_tokens", "n"}
        assert body["messages"][-1]["role"] == "user"
        await g.aclose()


async def test_openai_reasoning_models_get_max_completion_tokens():
    with FakeOpenAI(flavor="openai", model="o3-mini") as fake:
        g = gen(fake.url, extra_body={"temperature": None, "top_p": None})
        info = await g.start(1, [])
        assert info.max_tokens_field == "max_completion_tokens"
        await g.generate(DRAFT, "", 1, [])
        body = fake.log[-1].body
        assert body["max_completion_tokens"] == 8000 and "max_tokens" not in body and "temperature" not in body
        await g.aclose()


@pytest.mark.parametrize("kw, field, fix", [
    ({"extra_body": {"min_p": 0.05}}, "min_p", "leave it out with --extra-body '{\"min_p\": null}'"),
    ({"sampling": Sampling(top_k=40)}, "top_k", "change it with --top-k"),
    ({"model": "o3-mini"}, "temperature", "change it with --temperature"),
])
async def test_a_refused_field_stops_the_preflight_naming_the_field_and_the_flag(kw, field, fix):
    with FakeOpenAI(flavor="openai", model="o3-mini" if "model" in kw else "gpt-4o-mini") as fake:
        g = gen(fake.url, **kw)
        with pytest.raises(ConfigError) as err:
            await g.start(2, [])
        assert f"the field '{field}' is refused" in str(err.value) and fix in str(err.value)
        assert "\n" not in str(err.value)
        assert len(fake.log) == 0 and fake.count("draft") == 0  # refused before any generation
        await g.aclose()


async def test_completions_mode_on_openai_stops_at_once_pointing_at_mode():
    with FakeOpenAI(flavor="openai", model="gpt-4o-mini") as fake:
        g = gen(fake.url, mode="completions", chat_format="chatml")
        with pytest.raises(FatalEndpointError, match="--mode: OpenAI has no /v1/completions"):
            await g.start(2, [])
        assert len(fake.refused) == 1  # a 404 is not retried
        await g.aclose()


def test_a_requests_completion_tokens_are_shared_out_whole():
    assert split_evenly(7, 3) == [3, 2, 2] and sum(split_evenly(1001, 4)) == 1001
    assert split_evenly(None, 2) == [None, None] and split_evenly(5, 1) == [5]


async def test_a_token_limit_counts_the_servers_usage_and_makes_requests_wait():
    with FakeOpenAI() as fake:
        g = gen(fake.url, model="m", tpm=10)
        [e] = g.endpoints
        await g.generate(MSGS, "", 1, [])
        spent = fake.log[-1].usage["prompt_tokens"] + fake.log[-1].usage["completion_tokens"]
        assert e.throttler.budget.used() == spent > 10 and e.stats.tokens_last_minute == spent
        assert e.throttler.budget.wait_s() > 50  # the next request waits for the minute to pass
        await g.aclose()
