"""Each server's context window: listed at preflight, learned from a refusal (with its numbers
or without them), met first mid-run, and several endpoints of different contexts; every request
fitted to the endpoint that takes it."""

import asyncio
import random

import pytest

from agents.config import PREFLIGHT_MAX_TOKENS, GeneratorConfig, RetryPolicy, Sampling
from agents.errors import PromptTooLong
from agents.generation.breaker import CircuitBreaker
from agents.generation.generator import Generator
from agents.generation.router import Router
from agents.inspect import show
from agents.watch.stats import Stats
from tests.integration.test_endpoints import run_against
from tests.integration.test_fleet import QUICK_BREAKER, free_port
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
        before = len(big.log)
        await g.generate(long_prompt(5000), "", 1, [])  # too long for the small one: the big one takes it
        assert len(big.log) == before + 1
        await g.aclose()


async def test_an_endpoint_of_another_context_joining_late_is_fitted_to_its_own():
    port = free_port()
    with FakeOpenAI(context_length=16000, delay_s=0.05) as big:
        g = fleet(f"http://127.0.0.1:{port}/v1", big.url)
        for e in g.endpoints:
            e.breaker = CircuitBreaker(**QUICK_BREAKER)
        await g.start(1, [])
        late = g.endpoints[0]
        assert g.waiting == {late} and late.window.context is None
        with FakeOpenAI(context_length=4000, lists_context=False, port=port) as small:  # says nothing beforehand
            while g.waiting:
                await asyncio.sleep(0.05)
            for _ in range(4):
                await asyncio.gather(*(g.generate(long_prompt(2500), "", 1, []) for _ in range(4)))
            assert small.log and late.window.context == 4000  # learned from its one refusal
            assert len(length_refusals(small)) == 1 and not big.refused
            assert all(m <= 4000 - 2500 for m in sent_lengths(small))
            assert all(m == 8000 for m in sent_lengths(big))
        await g.aclose()


@pytest.mark.parametrize("context,listed", [(8192, False), (16384, True)])
def test_a_deepwriting_size_run_loses_no_record_to_the_context(tmp_path, capsys, monkeypatch, context, listed):
    recs = [{"id": f"r{i}", "question": f"Write essay {i}.", "solution": "The essay goes on. " * 300}
            for i in range(3)]
    with FakeOpenAI(context_length=context, lists_context=listed, draft_chars=30000, keep_prompts=False) as fake:
        p, db, out = run_against(fake, tmp_path, recs, "--max-steps", "3")
        said = f"context {context} tokens (listed by the server)" if listed else "context not listed"
        assert said in p.stdout, p.stdout
        assert len(length_refusals(fake)) == (0 if listed else 1)
    assert R.query(db, "select status, count(*) from record group by status") == [("done", 3)]
    skipped = R.query(db, "select count(*) from node where rejected like 'step skipped, request not sent: %'")
    # 8K: a DeepWriting draft (~7,500 tokens) in the edit prompt leaves no room: each step is
    # skipped, the reason stored, the record kept with its draft; 16K: every step is sent.
    assert skipped == [(9 if context == 8192 else 0,)]
    if skipped[0][0]:
        monkeypatch.setenv("COLUMNS", "10000")
        assert show.main(["--db", str(db), "--record", "r0"]) == 0
        assert "step skipped, request not sent: the prompt (about" in capsys.readouterr().out


def test_a_record_whose_draft_prompt_cannot_fit_is_skipped_with_the_reason(tmp_path):
    recs = [{"id": "long", "question": "Write it.", "solution": "The essay goes on. " * 2000},
            {"id": "short", "question": "Write it.", "solution": "The essay goes on. " * 50}]
    with FakeOpenAI(context_length=8192) as fake:
        run_against(fake, tmp_path, recs, "--max-steps", "1")
        assert not length_refusals(fake)
    rows = dict(R.query(tmp_path / "run.db", "select key, status || ': ' || coalesce(error, '') from record"))
    assert rows["short"] == "done: "
    assert rows["long"].startswith("skipped: draft not sent: the prompt (about")
