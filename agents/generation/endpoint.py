"""What an endpoint takes and gives back, as the preflight learns it. Pure: no I/O here.

The preflight (``Generator.start``) sends one small request with the run's parameters; a 4xx
becomes one line naming the refused field and the flag that changes it, and what the
endpoint supports is kept in ``EndpointInfo``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Sequence

from agents.errors import ConfigError, EndpointError
from prompts.tags import SYSTEM_PROMPT, THINK_OPEN

REASONING_FIELDS = ("reasoning_content", "reasoning")  # DeepSeek's name, then vLLM's current one
CONTINUE_FIELDS = {"continue_final_message": True, "add_generation_prompt": False}
PREFLIGHT_MESSAGES = [{"role": "system", "content": SYSTEM_PROMPT},
                      {"role": "user", "content": "Say hello in one short sentence."}]
PREFLIGHT_PREFILL = f"{THINK_OPEN}\nAlright"  # the form of a draft's prefill
# llama.cpp refuses a trailing assistant message while the chat template thinks (Qwen3, GLM,
# Gemma 4: tools/server/server-common.cpp, oaicompat_chat_params_parse); the request's own
# chat_template_kwargs override the server's, and with thinking off the prefill is continued.
THINKING_REFUSAL = "incompatible with enable_thinking"
NO_THINKING = {"enable_thinking": False}
NO_THINKING_FLAG = "--extra-body '{\"chat_template_kwargs\": {\"enable_thinking\": false}}'"

# The flag that changes each request field reer sends; any field can also be removed with
# --extra-body '{"FIELD": null}'. Fields a server names in a 400 are looked up here.
FIELD_FLAGS = {
    "temperature": "--temperature", "top_p": "--top-p", "top_k": "--top-k", "max_tokens": "--max-tokens",
    "max_completion_tokens": "--max-tokens", "n": "--expansions 1", "stop": "--acceptance reference",
    "model": "--model", "continue_final_message": "--chat-prefill off", "add_generation_prompt": "--chat-prefill off",
    "messages": "--chat-prefill off (or --mode completions)",
}
_KEPT_FIELDS = frozenset({"model", "messages", "prompt", *CONTINUE_FIELDS})  # changed by a flag, never removed
_SHORT_FIELDS = frozenset({"n", "model", "stop", "messages", "prompt"})  # named by `param` only, not found in prose


@dataclass(frozen=True)
class EndpointInfo:
    """What the preflight learned about the endpoint."""

    prefill: str  # "completions" | "continue" | "trailing" | "off"
    n_supported: bool
    max_tokens_field: str  # "max_completion_tokens" where the server takes it, else "max_tokens"
    thinking_field: str | None  # where a reasoning server returns the thinking, when it does
    no_prefill_reason: str | None = None  # why "auto" ended without a prefill
    thinking_off: bool = False  # the prefill needed chat_template_kwargs enable_thinking false
    context: str = ""  # the context window and where it came from (agents.generation.context)

    @property
    def prefills(self) -> bool:
        return self.prefill != "off"

    def describe(self) -> str:
        how = {"completions": "prefill in the rendered prompt (/v1/completions)",
               "continue": "prefill continued via continue_final_message",
               "trailing": "prefill as a trailing assistant message", "off": "NO prefill"}[self.prefill]
        if self.thinking_off:
            how += ", with the template's thinking off (chat_template_kwargs enable_thinking false)"
        parts = [how, "n supported" if self.n_supported else "n=1 requests in parallel",
                 f"length as {self.max_tokens_field}"]
        if self.thinking_field:
            parts.append(f"thinking read from '{self.thinking_field}'")
        if self.context:
            parts.append(self.context)
        return "; ".join(parts)


def continuation(text: str, prefill: str) -> str:
    """The generated text alone. llama.cpp returns a continued message whole, prefill included
    (in ``content``, or without its ``<think>`` in the reasoning field); vLLM returns only what
    it generated."""
    if prefill:
        for echo in (prefill, prefill.removeprefix(f"{THINK_OPEN}\n"), prefill.removeprefix(THINK_OPEN)):
            if echo and text.startswith(echo):
                return text[len(echo):]
    return text


def refused_field(exc: EndpointError, sent: dict[str, Any]) -> str | None:
    """The request field a 4xx names: its ``param`` (OpenAI, vLLM), else a field of ours that
    the message mentions ("Unrecognized request argument supplied: top_k")."""
    if exc.param:
        name = exc.param.split("[")[0].split(".")[0]
        if name:
            return name
    text = str(exc)
    candidates = [*sent, *CONTINUE_FIELDS, "max_completion_tokens"]
    for name in sorted(set(candidates) - _SHORT_FIELDS, key=len, reverse=True):
        if re.search(rf"(?<![\w]){re.escape(name)}(?![\w])", text):
            return name
    return None


def refusal_message(endpoint: str, exc: EndpointError, sent: dict[str, Any], extra_body: dict[str, Any]) -> str:
    """A refused preflight as one line: the field the server names, and the flag to change."""
    field = refused_field(exc, sent)
    where = f"the endpoint {endpoint} refused the preflight request ({exc})"
    if field is None:
        return f"{where}; check --model, the sampling options and --extra-body"
    flag = None if field in extra_body else FIELD_FLAGS.get(field)
    fixes = [f"change it with {flag}" if flag else "",
             "" if field in _KEPT_FIELDS else f"leave it out with --extra-body '{{\"{field}\": null}}'"]
    fix = ", or ".join(f for f in fixes if f) or "see the endpoint's documentation"
    return f"{where}: the field '{field}' is refused; {fix}"


def no_prefill_hint(reason: str, extra_body: dict[str, Any]) -> str:
    """``reason`` with what to set, where a thinking chat template refused the prefill."""
    if THINKING_REFUSAL not in reason:
        return reason
    kwargs = extra_body.get("chat_template_kwargs")
    if isinstance(kwargs, dict) and kwargs.get("enable_thinking"):
        return f"{reason}; --extra-body turns the template's thinking on: set {NO_THINKING_FLAG}"
    return (f"{reason}, even with {NO_THINKING_FLAG}; start llama-server with --reasoning-budget 0, or use "
            "--mode completions")


def agree(found: Sequence[tuple[str, EndpointInfo]]) -> None:
    """Endpoints that differ on the prefill would make the data differ with the endpoint."""
    if len({info.prefills for _, info in found}) > 1:
        can = [url for url, info in found if info.prefills]
        cannot = [url for url, info in found if not info.prefills]
        raise ConfigError(f"the endpoints differ: {', '.join(can)} continue a prefilled turn, {', '.join(cannot)} "
                          "cannot, and the data would differ with the endpoint: give endpoints of one kind, or "
                          "--chat-prefill off for all")
