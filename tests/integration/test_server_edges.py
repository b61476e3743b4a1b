"""Each server's edges, from its sources: llama.cpp's thinking templates, SGLang, the length field."""

import random

import httpx
import pytest

from agents.config import Sampling
from agents.errors import ConfigError
from agents.generation.endpoint import NO_THINKING_FLAG
from agents.generation.prefill import draft_prefill
from tests.integration.test_endpoints import drafts, records, run_against
from tests.integration.test_generator import gen
from tests.support.fake_openai import FakeOpenAI
from tests.support.fake_sglang import FakeSGLang

DRAFT = [{"role": "system", "content": "s"},
         {"role": "user", "content": "<task>\nq\n</task>\n<answer>\nThe answer.\n</answer>"}]
PREFILL = "<think>\nAlright"


@pytest.mark.parametrize("build", [dict(), dict(parses_continue=True, prefill_assistant=False)])
async def test_a_thinking_template_on_llamacpp_gets_the_prefill_with_thinking_off(build):
    with FakeOpenAI(flavor="llamacpp", thinking_template=True, **build) as fake:
        g = gen(fake.url, extra_body={"chat_template_kwargs": {"custom": 1}, "min_p": 0.05})
        info = await g.start(1, [])
        assert info.prefills and info.thinking_off and "enable_thinking false" in info.describe()
        [refused] = fake.refused  # once, with the user's kwargs alone
        assert refused["chat_template_kwargs"] == {"custom": 1}
        [out] = await g.generate(DRAFT, PREFILL, 1, [])
        body = fake.log[-1].body
        assert body["chat_template_kwargs"] == {"custom": 1, "enable_thinking": False}  # merged, not replaced
        assert body["min_p"] == 0.05 and fake.log[-1].continued
        assert out.text.startswith(" the user wants")  # the echoed prefill taken off
        await g.aclose()


async def test_without_a_thinking_template_nothing_is_added():
    with FakeOpenAI(flavor="llamacpp") as fake:
        g = gen(fake.url)
        info = await g.start(1, [])
        assert info.prefills and not info.thinking_off and not fake.refused
        await g.generate(DRAFT, PREFILL, 1, [])
        assert "chat_template_kwargs" not in fake.log[-1].body
        await g.aclose()


async def test_thinking_the_user_turned_on_is_kept_and_the_warning_names_the_flag():
    with FakeOpenAI(flavor="llamacpp", thinking_template=True) as fake:
        g = gen(fake.url, extra_body={"chat_template_kwargs": {"enable_thinking": True}})
        info = await g.start(1, [])
        assert not info.prefills and NO_THINKING_FLAG in info.no_prefill_reason
        assert all(b["chat_template_kwargs"] == {"enable_thinking": True} for b in fake.refused)
        await g.aclose()


def test_the_llamacpp_fake_refuses_what_its_source_refuses():
    with FakeOpenAI(flavor="llamacpp", thinking_template=True) as fake:
        two = [*DRAFT, {"role": "assistant", "content": "a"}, {"role": "assistant", "content": "b"}]
        r = httpx.post(fake.url + "/chat/completions", json={"model": "m", "messages": two})
        assert r.status_code == 400 and r.json()["error"]["message"] == \
            "Cannot have 2 or more assistant messages at the end of the list."
        one = [*DRAFT, {"role": "assistant", "content": PREFILL}]
        r = httpx.post(fake.url + "/chat/completions", json={"model": "m", "messages": one})
        assert r.json()["error"] == {"code": 400, "type": "invalid_request_error",
                                     "message": "Assistant response prefill is incompatible with enable_thinking."}
    with FakeOpenAI(flavor="llamacpp", parses_continue=True, prefill_assistant=False) as fake:
        both = {"model": "m", "messages": one, "continue_final_message": True, "add_generation_prompt": True}
        assert httpx.post(fake.url + "/chat/completions", json=both).status_code == 400
        r = httpx.post(fake.url + "/chat/completions", json={"model": "m", "messages": one})
        assert r.status_code == 200 and not fake.log[-1].continued  # --no-prefill-assistant: a new turn


# --- the length field ------------------------------------------------------------------------

@pytest.mark.parametrize("server, field", [
    (lambda: FakeOpenAI(flavor="vllm"), "max_completion_tokens"),
    (lambda: FakeOpenAI(flavor="llamacpp"), "max_completion_tokens"),
    (lambda: FakeOpenAI(flavor="llamacpp", reads_max_completion_tokens=False), "max_tokens"),  # older builds ignore it
    (lambda: FakeSGLang(), "max_completion_tokens"),
    (lambda: FakeSGLang(refuse_fields=("max_completion_tokens",)), "max_tokens"),  # refused outright
    (lambda: FakeOpenAI(flavor="openai", model="gpt-4o-mini"), "max_completion_tokens"),
])
async def test_the_length_field_is_the_one_the_server_reads(server, field):
    with server() as fake:
        g = gen(fake.url)
        info = await g.start(1, [])
        assert info.max_tokens_field == field and f"length as {field}" in info.describe()
        await g.generate(DRAFT, PREFILL if info.prefills else "", 1, [])
        body = fake.log[-1].body
        assert body[field] == 8000
        assert ({"max_tokens", "max_completion_tokens"} - {field}).isdisjoint(body)
        await g.aclose()


# --- SGLang ----------------------------------------------------------------------------------

async def test_sglang_continues_the_prefill_only_when_told_and_demotes_it_otherwise():
    with FakeSGLang() as fake:
        g = gen(fake.url)
        info = await g.start(2, [])
        assert info.prefill == "continue" and info.n_supported
        [out] = await g.generate(DRAFT, PREFILL, 1, [])
        assert fake.log[-1].continued and not fake.demoted and out.text.startswith(" the user wants")
        await g.aclose()
    with FakeSGLang() as fake:
        g = gen(fake.url, chat_prefill="trailing")
        await g.start(1, [])
        await g.generate(DRAFT, PREFILL, 1, [])
        assert fake.demoted[-1] == PREFILL and not fake.log[-1].continued  # a user turn: why reer sends continue
        await g.aclose()


@pytest.mark.parametrize("forced", [True, False])
async def test_sglang_reasoning_parsers_return_the_thinking_where_reer_reads_it(forced):
    with FakeSGLang(reasoning_field="reasoning_content", forced_reasoning=forced) as fake:
        g = gen(fake.url)
        await g.start(1, [])
        [out] = await g.generate(DRAFT, PREFILL, 1, [])
        assert fake.log[-1].continued
        thinking, _, answer = out.text.partition("</think>")
        assert thinking.strip().startswith("the user wants") and answer.strip() == "The answer."
        await g.aclose()


async def test_sglang_flat_errors_name_the_refused_field_and_its_flag():
    with FakeSGLang(refuse_fields=("top_k",)) as fake:
        g = gen(fake.url, sampling=Sampling(top_k=40))
        with pytest.raises(ConfigError) as e:
            await g.start(1, [])
        assert "the field 'top_k' is refused" in str(e.value) and "--top-k" in str(e.value)
        assert fake.refused and all("top_k" in b for b in fake.refused)
        await g.aclose()


# --- full runs with default flags keep the trigger phrases -----------------------------------

@pytest.mark.parametrize("server", [
    lambda: FakeSGLang(),
    lambda: FakeSGLang(reasoning_field="reasoning_content", forced_reasoning=True),
    lambda: FakeOpenAI(flavor="llamacpp", thinking_template=True),
], ids=["sglang", "sglang-reasoning-parser", "llamacpp-thinking-template"])
def test_default_flags_keep_the_trigger_phrases(tmp_path, server):
    recs = records(6)
    with server() as fake:
        p, db, out = run_against(fake, tmp_path, recs)
        assert "prefill continued via continue_final_message" in p.stdout and "WARNING" not in p.stdout
        generated = [r for r in fake.log if r.kind != "other"]
        assert generated and all(r.continued for r in generated)
    for key, text in drafts(db).items():
        phrase = draft_prefill("en", random.Random(f"0/{key}/0")).removeprefix("<think>\n")
        assert text.startswith(phrase) and text.count(phrase) == 1 and "</think>" not in text, (key, text[:60])
    if isinstance(fake, FakeOpenAI) and fake.thinking_template:
        assert "enable_thinking false" in p.stdout
