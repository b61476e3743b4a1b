"""The context window: what each server lists, each server's refusal for length, the fit."""

import pytest

from agents.errors import PromptTooLong
from agents.generation.context import MARGIN_TOKENS, MIN_ROOM_TOKENS, Refusal, Window, listed_context, parse_refusal

REFUSALS = [
    # vLLM: serving_engine.py _validate_input, both wordings
    ("'max_tokens' or 'max_completion_tokens' is too large: 8000. This model's maximum context length is 16384 "
     "tokens and your request has 10580 input tokens (8000 > 16384 - 10580).", None, Refusal(16384, 10580)),
    ("This model's maximum context length is 8192 tokens. However, your request has 9000 input tokens. Please "
     "reduce the length of the input messages.", None, Refusal(8192, 9000)),
    # SGLang: tokenizer_manager.py _validate_one_request
    ("The input (9000 tokens) is longer than the model's context length (8192 tokens).", None, Refusal(8192, 9000)),
    ("Requested token count exceeds the model's maximum context length of 8192 tokens. You requested a total of "
     "15000 tokens: 7000 tokens from the input messages and 8000 tokens for the completion.", None,
     Refusal(8192, 7000)),
    # llama.cpp: server-context.cpp, with its numbers in the body too
    ("request (9412 tokens) exceeds the available context size (8192 tokens), try increasing it",
     {"type": "exceed_context_size_error", "n_prompt_tokens": 9412, "n_ctx": 8192}, Refusal(8192, 9412)),
    # OpenAI
    ("This model's maximum context length is 128000 tokens. However, you requested 130000 tokens (122000 in the "
     "messages, 8000 in the completion).", {"code": "context_length_exceeded"}, Refusal(128000, 122000)),
    # Without numbers (older llama.cpp builds, proxies)
    ("the request exceeds the available context size, try increasing it", None, Refusal(None, None)),
]


@pytest.mark.parametrize("message,body,expected", REFUSALS)
def test_each_servers_refusal_for_length_gives_its_numbers(message, body, expected):
    assert parse_refusal(f"Error code: 400 - {message}", body) == expected


@pytest.mark.parametrize("message", ["Unrecognized request argument supplied: top_k",
                                     "'max_tokens' is not supported with this model. Use 'max_completion_tokens'"])
def test_other_refusals_are_not_for_length(message):
    assert parse_refusal(message, {"param": "max_tokens"}) is None


def test_what_each_server_lists():
    vllm = {"data": [{"id": "other", "max_model_len": 4096}, {"id": "m", "max_model_len": 32768}]}
    assert listed_context(vllm, None, "m") == 32768  # the run's model, not the first listed
    llamacpp = {"data": [{"id": "m", "meta": {"n_ctx_train": 131072}}]}
    assert listed_context(llamacpp, {"default_generation_settings": {"n_ctx": 8192}}, "m") == 8192  # what it runs
    assert listed_context(llamacpp, None, "m") == 131072
    assert listed_context({"data": [{"id": "gpt-4o"}]}, {"error": "not found"}, "gpt-4o") is None


def test_the_fit_leaves_room_and_refuses_a_prompt_that_leaves_none():
    w = Window(8192)
    prompt = "word " * 4000  # 20,000 characters: about 5,000 tokens
    asked = w.fit(prompt, 8000)
    assert asked < 8192 - 5000 and asked + w.tokens(prompt) <= 8192
    assert w.fit("short", 8000) == 8000  # room for the whole of it
    with pytest.raises(PromptTooLong, match="does not fit the endpoint's context of 8192 tokens"):
        w.fit("word " * 6600, 8000)
    assert Window(None).fit(prompt, 8000) == 8000  # not known yet: as asked


def test_the_estimate_is_corrected_from_the_servers_counts():
    w = Window(100_000)
    text = "字" * 3000  # Chinese: about a token a character, not 4 characters a token
    assert w.tokens(text) >= 3000
    w.observe(text, 2000)  # this tokenizer packs it tighter
    assert 2000 <= w.tokens(text) - MARGIN_TOKENS < 2200
    w.observe("x" * 40, 30)  # a short prompt is mostly template: ignored
    assert 2000 <= w.tokens(text) - MARGIN_TOKENS < 2200
    exact = Window(100_000, count=lambda t: len(t) // 2)
    assert exact.tokens(text) == 1500 + MARGIN_TOKENS


def test_a_refusal_teaches_the_window_and_without_numbers_asks_less_each_time():
    w = Window(None)
    prompt = "word " * 2000
    w.learn(Refusal(4000, 2600), prompt, 8000)
    assert w.context == 4000 and "learned from a refusal" in w.describe()
    assert w.fit(prompt, 8000) <= 4000 - 2600
    blind = Window(None)
    blind.learn(Refusal(None, None), prompt, 8000)
    first = blind.fit(prompt, 8000)
    blind.learn(Refusal(None, None), prompt, first)
    second = blind.fit(prompt, 8000)
    assert MIN_ROOM_TOKENS <= second < first < 8000
