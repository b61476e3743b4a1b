"""A loopback server that takes chat requests as SGLang's OpenAI server does, for tests.

From sgl-project/sglang, python/sglang/srt/entrypoints/openai/:

- ``protocol.py`` (``ChatCompletionRequest``): a pydantic model that drops fields it does not
  know, ``add_generation_prompt`` among them (the template always gets the generation prompt);
  ``continue_final_message`` defaults to false; ``max_tokens`` is deprecated for
  ``max_completion_tokens`` and both are read; ``n`` is honoured; ``separate_reasoning``
  defaults to true.
- ``serving_chat.py`` (``_handle_last_assistant_message``): with ``continue_final_message`` a
  trailing assistant message is taken off and its tokens appended after the generation prompt
  (``_append_assistant_prefix_to_prompt_ids``); the output is what the model wrote after it,
  without the prefix. Without it, the trailing assistant message becomes a *user* message, so
  the model starts a turn of its own.
- Under ``--reasoning-parser`` the thinking comes back in ``reasoning_content``
  (``reasoning_parser.py``): a parser that assumes the output starts in thinking (DeepSeek-R1's,
  ``forced_reasoning``) splits at ``</think>``; one that waits for ``<think>`` (Qwen3's) finds
  none after a prefill and leaves everything in ``content``.
- ``serving_models.py`` lists ``max_model_len`` per model in ``/v1/models``;
  ``managers/tokenizer_manager.py`` (``_validate_one_request``) refuses an input at or past the
  context ("The input (P tokens) is longer than the model's context length (C tokens).") and an
  input plus ``max_new_tokens`` at or past it ("Requested token count exceeds the model's maximum
  context length of C tokens. You requested a total of T tokens: ..."), as a 400.
- ``utils.py`` (``create_error_response``) answers errors flat, not under ``"error"``:
  ``{"object": "error", "message", "type", "param", "code"}``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from tests.support.fake_openai import FakeOpenAI, Refused


@dataclass
class FakeSGLang(FakeOpenAI):
    flavor: str = "sglang"
    forced_reasoning: bool = False  # with reasoning_field: a DeepSeek-R1-style parser
    refuse_fields: tuple[str, ...] = ()  # fields answered with a flat 400 naming them (param)
    demoted: list = field(default_factory=list)  # trailing assistant messages turned into user ones

    def _error(self, status: int, message: str, param: str | None = None, code=None) -> Refused:
        kind = "BadRequestError" if status < 500 else "InternalServerError"
        return Refused(status, {"object": "error", "message": message, "type": kind, "param": param,
                                "code": status})

    def length_refusal(self, c: int, p: int, m: int) -> Refused:
        if p >= c:
            return self._error(400, f"The input ({p} tokens) is longer than the model's context length ({c} tokens).")
        return self._error(400, f"Requested token count exceeds the model's maximum context length of {c} tokens. "
                                f"You requested a total of {p + m} tokens: {p} tokens from the input messages and "
                                f"{m} tokens for the completion. Please reduce the number of tokens in the input "
                                "messages or the completion to fit within the limit.")

    def check_context(self, body: dict, endpoint: str) -> None:
        if self.context_length and self.prompt_tokens(body, endpoint) + (self.length_limit(body) or 16) \
                >= self.context_length:  # SGLang refuses at the context, not past it
            if not self.refusal_numbers:
                raise self._error(400, "the request exceeds the available context size, try increasing it")
            raise self.length_refusal(self.context_length, self.prompt_tokens(body, endpoint),
                                      self.length_limit(body) or 16)

    def check(self, body: dict, endpoint: str) -> None:
        self.check_context(body, endpoint)
        for name in self.refuse_fields:
            if name in body:
                raise self._error(400, f"1 validation error for ChatCompletionRequest\n{name}\n  Extra inputs are "
                                       "not permitted", name)

    def continues(self, body: dict, endpoint: str) -> str | None:
        if endpoint == "completions":
            return ""
        messages = body.get("messages") or []
        if not messages or messages[-1].get("role") != "assistant":
            return None
        return messages[-1].get("content") or "" if body.get("continue_final_message") else None

    def respond(self, body: dict, endpoint: str, fault: str | None = None) -> dict:
        messages = body.get("messages")
        if messages and messages[-1].get("role") == "assistant" and not body.get("continue_final_message"):
            # The demoted message reads as the user's: the prompt the model sees.
            with self._lock:
                self.demoted.append(messages[-1].get("content"))
            body = {**body, "messages": [*messages[:-1], {"role": "user", "content": messages[-1]["content"]}]}
        return super().respond(body, endpoint, fault)

    def _message(self, text: str, prefill: str | None) -> dict:
        if self.reasoning_field is None:
            return {"role": "assistant", "content": text}
        opened = text.lstrip().startswith("<think>")
        if not (opened or self.forced_reasoning or (prefill is None and self.template_opens_think)):
            return {"role": "assistant", "content": text, "reasoning_content": None}
        text = text.lstrip().removeprefix("<think>")
        reasoning, closed, content = text.partition("</think>")
        if not closed:
            return {"role": "assistant", "content": None, "reasoning_content": reasoning}
        return {"role": "assistant", "content": content or None, "reasoning_content": reasoning}
