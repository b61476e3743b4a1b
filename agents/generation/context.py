"""An endpoint's context window, and each request fitted to it. Pure: no I/O here.

A request's prompt and its output share the server's context: a server refuses a request whose
prompt plus ``max_tokens`` passes it (vLLM, SGLang, OpenAI) or whose prompt alone does
(llama.cpp). So every request asks for ``min(max_tokens, context - prompt - margin)``, and one
whose prompt alone leaves no room is not sent (``PromptTooLong``).

The context comes from ``--context-length``, else from what the server lists (vLLM and SGLang:
``max_model_len`` in ``/v1/models``; llama.cpp: ``n_ctx`` in ``/props``, else the model's
``n_ctx_train`` in ``/v1/models`` ``meta``), else from the numbers in its first refusal for
length. The prompt's tokens are counted exactly with a tokenizer, else estimated from its
characters (about 4 a token in English, 1 a character in Chinese), corrected by the ratio of the
``prompt_tokens`` the server reports to that estimate, over all the prompts it has counted.
"""

from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass
from typing import Any, Callable

from agents.errors import PromptTooLong

ASCII_CHARS_PER_TOKEN = 4.0  # English and code: about 4 characters a token; other scripts about 1 a character
START_FACTOR = 1.25  # before the server has counted a prompt: the estimate raised by a quarter, to be safe
MARGIN_TOKENS = 64  # the chat template's own tokens, and rounding
MARGIN_SHARE = 0.03  # an estimate's error, as a share of the prompt (none when counted exactly)
MIN_ROOM_TOKENS = 128  # less room than this for the output: the prompt does not fit
MIN_OBSERVED_TOKENS = 256  # shorter prompts are mostly the template's tokens: they do not correct the estimate
UNSAID_SHRINK = 0.5  # a refusal without numbers: the next try asks for this share of the output

# The servers' refusals for length, with the numbers each gives (context, prompt tokens):
_REFUSALS: list[tuple[str, str, str | None]] = [
    # vLLM, vllm/entrypoints/openai/serving_engine.py (_validate_input); OpenAI's own wording too
    (r"maximum context length is (\d+) tokens", "ctx", None),
    (r"your request has (\d+) input tokens", None, "prompt"),
    (r"you requested (\d+) tokens \((\d+) in the messages", None, "prompt2"),
    # SGLang, python/sglang/srt/managers/tokenizer_manager.py (_validate_one_request)
    (r"The input \((\d+) tokens\) is longer than the model's context length \((\d+) tokens\)", "ctx2", "prompt"),
    (r"maximum context length of (\d+) tokens", "ctx", None),
    (r"(\d+) tokens from the input messages", None, "prompt"),
    # llama.cpp, tools/server/server-context.cpp (exceed_context_size_error)
    (r"request \((\d+) tokens\) exceeds the available context size \((\d+) tokens\)", "ctx2", "prompt"),
]
_LENGTH_WORDS = ("context length", "context size", "context window", "context_length_exceeded",
                 "exceed_context_size", "maximum context", "too many tokens")


@dataclass(frozen=True)
class Refusal:
    """A refusal for length, and the numbers it gave (None: not given)."""

    context: int | None
    prompt_tokens: int | None


def listed_context(models: Any, props: Any, model: str) -> int | None:
    """The context a server lists: llama.cpp's ``/props`` ``n_ctx`` (what it runs with), else
    ``max_model_len`` of ``model`` in ``/v1/models`` (vLLM, SGLang), else its ``meta.n_ctx_train``."""
    if isinstance(props, dict):
        n_ctx = (props.get("default_generation_settings") or {}).get("n_ctx") or props.get("n_ctx")
        if isinstance(n_ctx, int) and n_ctx > 0:
            return n_ctx
    data = models.get("data") if isinstance(models, dict) else None
    entries = [m for m in data or [] if isinstance(m, dict)]
    entries.sort(key=lambda m: m.get("id") != model)  # the run's model first
    for m in entries:
        for value in (m.get("max_model_len"), (m.get("meta") or {}).get("n_ctx_train")):
            if isinstance(value, int) and value > 0:
                return value
    return None


def parse_refusal(message: str, body: Any = None) -> Refusal | None:
    """The refusal for length in a 4xx's message (and its JSON body: llama.cpp adds ``n_ctx``
    and ``n_prompt_tokens``), or None where the refusal is for something else."""
    error = body.get("error", body) if isinstance(body, dict) else {}
    error = error if isinstance(error, dict) else {}
    context, prompt = error.get("n_ctx"), error.get("n_prompt_tokens")
    said = any(w in message.lower() for w in _LENGTH_WORDS) or error.get("code") == "context_length_exceeded"
    for pattern, ctx_group, prompt_group in _REFUSALS:
        m = re.search(pattern, message, re.IGNORECASE)
        if not m:
            continue
        said = True
        if ctx_group and context is None:
            context = int(m.group(2 if ctx_group == "ctx2" else 1))
        if prompt_group and prompt is None:
            prompt = int(m.group(2 if prompt_group == "prompt2" else 1))
    if not said:
        return None
    return Refusal(context if isinstance(context, int) else None, prompt if isinstance(prompt, int) else None)


def _raw_estimate(text: str) -> float:
    ascii_chars = sum(1 for ch in text if ord(ch) < 128)
    return ascii_chars / ASCII_CHARS_PER_TOKEN + (len(text) - ascii_chars)


class Window:
    """One endpoint's context, and the count of a prompt's tokens."""

    def __init__(self, context: int | None = None, source: str = "--context-length",
                 count: Callable[[str], int] | None = None):
        self.context, self.source = context, source if context else "not known yet"
        self.exact = count  # a tokenizer's count, when the run has one
        self.factor = START_FACTOR
        self._estimated = self._counted = 0
        self.said_cap: int | None = None  # the lowest output cap said so far
        self.proven = 0  # the largest prompt + output answered while the context is not known
        self.gate = asyncio.Lock()  # such a request larger than that goes alone (agents.generation.fitting)

    def tokens(self, prompt: str) -> int:
        if self.exact is not None:
            return self.exact(prompt) + MARGIN_TOKENS
        return int(_raw_estimate(prompt) * self.factor * (1 + MARGIN_SHARE)) + MARGIN_TOKENS

    def observe(self, prompt: str, prompt_tokens: int | None) -> None:
        """The server's count of a prompt sent corrects the estimate: the ratio of all its counts to
        all their estimates (long prompts weigh most: a short one is mostly template)."""
        if prompt_tokens and prompt_tokens >= MIN_OBSERVED_TOKENS and prompt:
            self._estimated += _raw_estimate(prompt)  # type: ignore[assignment]
            self._counted += prompt_tokens
            self.factor = self._counted / max(1.0, self._estimated)

    def fit(self, prompt: str, max_tokens: int) -> int:
        """The output length to ask for; PromptTooLong where the prompt leaves no room."""
        if self.context is None:
            return max_tokens
        prompt_tokens = self.tokens(prompt)
        room = self.context - prompt_tokens
        if room < MIN_ROOM_TOKENS:
            raise PromptTooLong(f"the prompt (about {prompt_tokens} tokens) does not fit the endpoint's context of "
                                f"{self.context} tokens ({self.source}) with room to write")
        return min(max_tokens, room)

    def learn(self, refusal: Refusal, prompt: str, sent_max_tokens: int) -> None:
        """What a refusal for length says: the context, and the prompt's true count; without
        numbers, a context that leaves the output ``UNSAID_SHRINK`` of what was asked."""
        if refusal.prompt_tokens:
            self.observe(prompt, refusal.prompt_tokens)
        if refusal.context:
            self.context, self.source = refusal.context, "learned from a refusal"
        else:
            guess = self.tokens(prompt) + int(sent_max_tokens * UNSAID_SHRINK)
            self.context = min(self.context or guess, guess)
            self.source = "guessed from a refusal without numbers"

    def describe(self) -> str:
        if self.context is None:
            return "context not listed (learned from the first refusal for length, or give --context-length)"
        return f"context {self.context} tokens ({self.source})"
