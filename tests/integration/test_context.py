"""Each server's context window: listed at preflight, learned from a refusal (with its numbers
or without them), met first mid-run, and several endpoints of different contexts; every request
fitted to the endpoint that takes it."""

import random

import pytest

from agents.config import PREFLIGHT_MAX_TOKENS, GeneratorConfig, RetryPolicy, Sampling
from agents.errors import PromptTooLong
from agents.generation.generator import Generator
from agents.generation.router import Router
from agents.watch.stats import Stats
from tests.integration.test_endpoints import run_against
from tests.support import runner as R
from tests.support.fake_openai import FakeOpenAI
from tests.support.fake_sglang import FakeSGLang

SERVERS = [dict(flavor="vllm"), dict(flavor="llamacpp"), dict(flavor="openai", model="gpt-4o")]
ALL = [*[(FakeOpenAI, s) for s in SERVERS], (FakeSGLang, {})]
IDS = ["vllm", "llamacpp", "openai", "sglang"]


def long_prompt(words: int) -> list[dict]:
    body = " ".join(f"w{i % 97:02d}" for i in range(words))
    return [{"role": "system", "content": "s"},
            {"role": "user", "content": f"<task>\nq\n</task>\n<answer>\n{body}\n</answer>"}]


def fleet(*urls, context=None, max_tokens=8000, logs=None) -> Router:
    stats, rng = Stats(), random.Random(0)
    gens = [Generator(GeneratorConfig(endpoint=u, context_length=context, sampling=Sampling(max_tokens=max_tokens),
                                      retry=RetryPolicy(max_retries=2, base_s=0.01, max_s=0.02)), stats, rng,
                      log=(logs.append if logs is not None else None)) for u in urls]
    return Router(gens, gens[0].cfg.retry, stats, rng, log=lambda line: None)


def sent_lengths(fake) -> list[int]:
    return [fake.length_limit(r.body) for r in fake.log if r.kind != "other"]


def length_refusals(fake) -> list[dict]:
    return [b for b in fake.refused if fake.length_limit(b) != PREFLIGHT_MAX_TOKENS]


@pytest.mark.parametrize("server,kind", ALL, ids=IDS)
async def test_a_listed_context_is_said_at_preflight_and_every_request_fits_it(server, kind):
    with server(context_length=4000, **kind) as fake:
        g = fleet(fake.url)
        info = await g.start(1, [])
        listed = kind.get("flavor") != "openai"
        assert ("context 4000 tokens (listed by the server)" in info.describe()) == listed
        for words in (500, 2500, 3500):
            await g.generate(long_prompt(words), "", 1, [])
        sent = sent_lengths(fake)
        assert len(sent) == 3 and all(m < 8000 for m in sent), sent  # never the whole --max-tokens
        refused_for_length = length_refusals(fake)
        # Listed: nothing refused; not listed: at most the one refusal it learns from.
        assert len(refused_for_length) == (0 if listed else 1)
        with pytest.raises(PromptTooLong, match="does not fit"):
            await g.generate(long_prompt(5000), "", 1, [])  # never sent
        assert len(fake.log) == 4 or not listed
        await g.aclose()


@pytest.mark.parametrize("server,kind", ALL, ids=IDS)
async def test_a_context_met_first_mid_run_is_learned_from_the_refusals_numbers(server, kind):
    with server(context_length=4000, lists_context=False, **kind) as fake:
        logs: list[str] = []
        g = fleet(fake.url, logs=logs)
        info = await g.start(1, [])
        assert "context not listed" in info.describe()
        if kind.get("flavor") == "llamacpp":  # refuses only a prompt that passes the context alone
            with pytest.raises(PromptTooLong, match="exceeds the available context size"):
                await g.generate(long_prompt(4500), "", 1, [])
        else:
            await g.generate(long_prompt(2500), "", 1, [])
        assert len(length_refusals(fake)) == 1  # learned from once; sent again only asking less
        assert any("refused a request for length: context 4000 tokens (learned from a refusal)" in x for x in logs)
        await g.generate(long_prompt(3000), "", 1, [])
        assert len(length_refusals(fake)) == 1 and all(m <= 4000 - 3000 for m in sent_lengths(fake)[-1:])
        await g.aclose()


@pytest.mark.parametrize("server,kind", ALL, ids=IDS)
async def test_a_refusal_without_numbers_is_never_sent_again_unchanged(server, kind):
    with server(context_length=4000, lists_context=False, refusal_numbers=False, **kind) as fake:
        g = fleet(fake.url)
        await g.start(1, [])
        await g.generate(long_prompt(2500), "", 1, [])
        asked = [fake.length_limit(b) for b in length_refusals(fake)] + sent_lengths(fake)
        assert len(asked) == len(set(asked)) and asked == sorted(asked, reverse=True)  # each try asks less
        await g.aclose()


async def test_context_length_overrides_what_the_server_lists():
    with FakeOpenAI(context_length=4000) as fake:
        g = fleet(fake.url, context=3000)
        info = await g.start(1, [])
        assert "context 3000 tokens (--context-length)" in info.describe()
        with pytest.raises(PromptTooLong):
            await g.generate(long_prompt(3000), "", 1, [])
        assert not [r for r in fake.log if r.kind != "other"]
        await g.aclose()


async def test_endpoints_of_different_contexts_each_fit_the_requests_they_take():
    with FakeOpenAI(context_length=4000) as small, FakeOpenAI(flavor="llamacpp", context_length=16000) as big:
        g = fleet(small.url, big.url)
        await g.start(1, [])
        for _ in range(12):
            await g.generate(long_prompt(2500), "", 1, [])
        assert not small.refused and not big.refused
        assert all(m <= 4000 - 2500 for m in sent_lengths(small))
        assert all(m == 8000 for m in sent_lengths(big))  # room for the whole --max-tokens
        await g.aclose()


async def test_an_endpoint_of_another_context_joining_late_is_fitted_to_its_own():
    with FakeOpenAI(context_length=16000) as big, FakeOpenAI(context_length=4000, faults=[]) as small:
        small.lists_context = True
        g = fleet(big.url, small.url)
        await g.start(1, [])
        [e_big, e_small] = g.endpoints
        assert e_big.window.context == 16000 and e_small.window.context == 4000
        await g.aclose()


def test_a_deepwriting_size_run_on_a_16k_server_loses_no_record_to_the_context(tmp_path):
    recs = [{"id": f"r{i}", "question": f"Write essay {i}.", "solution": "The essay. " * 400} for i in range(3)]
    with FakeOpenAI(context_length=16384, draft_chars=30000, keep_prompts=False) as fake:
        p, db, out = run_against(fake, tmp_path, recs, "--max-steps", "3")
        assert "context 16384 tokens (listed by the server)" in p.stdout
        assert not fake.refused
    assert R.query(db, "select count(*) from record where status = 'failed'") == [(0,)]
