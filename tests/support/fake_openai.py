"""A real OpenAI-compatible server on a loopback port, for tests: ``/v1/models``,
``/v1/chat/completions`` and ``/v1/completions``, over real HTTP.

It behaves like one of three real servers (``flavor``), as their sources and docs show them:

    "vllm"      continues a trailing assistant message when told ``continue_final_message``
                (400 with ``add_generation_prompt`` also true), honours ``n``, takes ``top_k``,
                ignores fields it does not know; with ``reasoning_field`` it returns the
                thinking apart, as ``--reasoning-parser`` does ("reasoning", or the older
                "reasoning_content"). Errors: ``{"error": {"message", "type", "param", "code"}}``.
    "llamacpp"  continues a trailing assistant message by itself (its default
                ``--prefill-assistant``, on its Jinja path) and returns that message whole,
                prefill included, as llama.cpp's chat parser does; 400 with both
                ``continue_final_message`` and ``add_generation_prompt`` true; ignores fields it
                does not know; answers ``n`` != 1 with a 500 "Only one completion choice is
                allowed", as builds before ``n`` support did (``supports_n=True``: as later ones).
                From tools/server/server-common.cpp (oaicompat_chat_params_parse): on the prefill
                path, 400 "Cannot have 2 or more assistant messages at the end of the list.",
                reasoning_format forced to none (no reasoning field comes back), and with a
                thinking chat template (``thinking_template``) 400 "Assistant response prefill is
                incompatible with enable_thinking." unless the request's ``chat_template_kwargs``
                say ``enable_thinking: false`` (issue 20861, PR 15404). ``parses_continue``: newer
                builds (PR 23012) take ``continue_final_message`` with ``add_generation_prompt``
                false as the prefill path even under ``--no-prefill-assistant``
                (``prefill_assistant=False``). ``reads_max_completion_tokens=False``: builds that
                read ``max_tokens`` alone (server-task.cpp, params_from_json_cmpl, reads both now).
    "openai"    400 "Unrecognized request argument supplied: X" for any field outside its API
                (``top_k``, ``continue_final_message`` ...); a trailing assistant message is an
                earlier turn, not continued; reasoning models (``o*``, ``gpt-5*``) refuse
                ``max_tokens`` (use ``max_completion_tokens``) and any temperature or top_p but
                1; no ``/v1/completions`` for chat models (404).

It writes plausible REER outputs: a multi-paragraph thinking for a draft request (its prompt
shows the answer) and an ``<analyze>``/``<refine>`` edit for an edit request (its prompt marks a
``<replace>`` passage). A model left to run on writes past its thinking (``</think>`` then an
answer) and past its ``</refine>``; ``stop`` strings cut the output as servers do. Every request
is logged, so tests can count what was generated. Faults hit draft and edit requests only (not
the preflight), either from a queue (``faults``: HTTP statuses or fault names, in order) or at
random (``fault_rate`` of the requests, a kind drawn from ``fault_kinds``):

    "429" "429-retry-after" "500" "502" "503"   an error status (429-retry-after sets Retry-After: 1)
    "hang"        answer only after ``hang_s`` (longer than the client's timeout)
    "reset"       close the connection without a response
    "garbage"     200 with a body that is not JSON
    "truncated"   200 with half a JSON body
    "empty"       200 with an empty ``choices`` list
    "length"      a cut-off output (``finish_reason: length``)
    "notags"      an output without <think>/<refine>

A context window (``context_length``, in the fake's tokens: a prompt's words) is listed where
the server lists it (``lists_context``) and an over-long request refused in the server's own
status, shape and words (``refusal_numbers=False``: without numbers, as older llama.cpp builds
and some proxies word it):

    "vllm"      ``max_model_len`` per model in ``/v1/models`` (vllm/entrypoints/openai/serving_models.py);
                400 when prompt + max_tokens passes it, in the two wordings of
                vllm/entrypoints/openai/serving_engine.py (``_validate_input``).
    "llamacpp"  ``/props`` ``default_generation_settings.n_ctx`` (the slot's context) and
                ``/v1/models`` ``meta.n_ctx_train`` (tools/server/server-context.cpp); 400
                ``exceed_context_size_error`` with ``n_prompt_tokens`` and ``n_ctx`` only when the
                prompt alone passes it (a long output is cut at the context instead).
    "openai"    lists nothing; 400 ``context_length_exceeded`` "This model's maximum context length
                is C tokens. However, you requested T tokens (P in the messages, M in the completion)."

Run it alone for a soak test: ``python -m tests.support.fake_openai --port 8000 --fault-rate 0.2``.
"""

from __future__ import annotations

import json
import random
import re
import threading
import time
from dataclasses import dataclass, field

from tests.support.loopback import Hangs, JSONHandler, LoopbackServer, serve_until_killed

FAULT_KINDS = ["429", "429-retry-after", "500", "502", "503", "hang", "reset", "garbage", "truncated", "empty",
               "length", "notags"]

PARAGRAPHS = [
    "the user wants something short and vivid, so I should first decide who will read it and what they expect from the very first line.",
    "Hmm, maybe I should open with a concrete image instead of a statement. Wait, let me think about which image carries the whole piece.",
    "Next I will settle the structure: an opening, a turn in the middle, and an ending that echoes the start. But wait, the ending must surprise a little.",
    "Alternatively, I could let the middle carry the emotion and keep the ending quiet. Let me think about the rhythm of each sentence before I draft.",
    "---\nDraft outline: open on the image, widen to the situation, turn on a single detail, close by returning to the first image with new meaning.",
]
PARAGRAPH_CHARS = 1000  # a long draft's paragraphs: a 30,000-character draft has ~30 segments
OPENAI_CHAT_FIELDS = frozenset({
    "model", "messages", "temperature", "top_p", "n", "stop", "max_tokens", "max_completion_tokens", "seed",
    "presence_penalty", "frequency_penalty", "logit_bias", "logprobs", "top_logprobs", "user", "response_format",
    "tools", "tool_choice", "parallel_tool_calls", "stream", "stream_options", "reasoning_effort", "service_tier",
    "store", "metadata", "modalities", "prediction", "audio", "verbosity", "web_search_options"})


@dataclass
class Logged:
    kind: str  # "draft" | "edit" | "other" (the preflight)
    endpoint: str  # "chat" | "completions"
    task: str
    segment: str | None
    n: int
    prompt: str
    body: dict = field(default_factory=dict)
    continued: bool = False  # the output continued a prefilled assistant turn
    usage: dict = field(default_factory=dict)  # what the response said it cost


class Refused(Exception):
    def __init__(self, status: int, body: dict):
        self.status, self.body = status, body


@dataclass
class FakeOpenAI(Hangs, LoopbackServer):
    model: str = "fake-model"
    flavor: str = "vllm"  # "vllm" | "llamacpp" | "openai"
    supports_n: bool = True  # vllm: False ignores n (one choice back), as some servers do
    llamacpp_n: bool = False  # llamacpp: honours n, as recent builds do
    reasoning_field: str | None = None  # vllm with a reasoning parser: "reasoning" or "reasoning_content"
    template_opens_think: bool = False  # the chat template puts <think> in the generation prompt
    thinking_template: bool = False  # llamacpp: a Qwen3/GLM/Gemma 4 template, thinking on by default
    parses_continue: bool = False  # llamacpp: a build that reads continue_final_message (PR 23012)
    prefill_assistant: bool = True  # llamacpp: the server's --prefill-assistant (its default)
    reads_max_completion_tokens: bool = True  # False: an older server that reads max_tokens alone
    delay_s: float = 0.0
    seed: int = 0
    faults: list = field(default_factory=list)  # statuses or fault names for the next requests, in order
    fault_rate: float = 0.0
    fault_kinds: list[str] = field(default_factory=lambda: list(FAULT_KINDS))
    hang_s: float = 3.0
    # Once this many requests are answered, every request is accepted and never answered (a
    # deadlocked GPU process) until ``answer_again``.
    hang_after: int | None = None
    # DeepWriting size: a draft of about this many characters (~8K tokens at 30,000) in paragraphs
    # of about PARAGRAPH_CHARS, and each rewrite about as long as its segment. 0: short outputs.
    draft_chars: int = 0
    keep_prompts: bool = True  # False: the log keeps counts, not texts (a long run's prompts are GBs)
    api_key: str | None = None  # when set, requests must carry it
    context_length: int | None = None  # the server's context window: prompt tokens + max_tokens
    lists_context: bool = True  # the server says its context before any request (where its kind does)
    refusal_numbers: bool = True  # False: an over-long request refused without its numbers
    port: int = 0
    log: list[Logged] = field(default_factory=list)  # every request answered
    refused: list[dict] = field(default_factory=list)  # the bodies of requests refused by `check`
    injected: list[str] = field(default_factory=list)

    def __post_init__(self):
        self._lock = threading.Lock()
        self._rng = random.Random(self.seed)
        self._fault_rng = random.Random(self.seed + 1)
        self.busy = 0  # requests being handled now (one may outlive its client)
        self._unhang = threading.Event()
        self.url = self._listen(self.port, self._handler()) + "/v1"

    def count(self, kind: str) -> int:
        with self._lock:
            return sum(1 for r in self.log if r.kind == kind)

    def choices_generated(self, kind: str) -> int:
        with self._lock:
            return sum(r.n for r in self.log if r.kind == kind)

    # --- what it writes -------------------------------------------------------------------

    def _draft(self, answer: str) -> str:
        if self.draft_chars:
            return " " + self._long_text(self.draft_chars, answer, paragraphs=True)
        k = self._rng.randint(3, len(PARAGRAPHS))
        words = answer.split()
        hint = " ".join(words[: min(12, len(words))])
        body = "\n\n".join(PARAGRAPHS[:k - 1] + [f"I am going to write something like: {hint}. " + PARAGRAPHS[-1]])
        return " " + body

    def _edit(self, segment: str, answer: str) -> str:
        first = " ".join(segment.split()[:4])
        words = answer.split()
        start = self._rng.randint(0, max(0, len(words) - 10))
        borrowed = " ".join(words[start : start + self._rng.randint(4, 20)])
        if self.draft_chars:
            borrowed += " " + self._long_text(len(segment), answer, paragraphs=False)
        # The analysis quotes the tags, as instruct models do: a </refine> stop string cuts it there.
        return (f"The passage sets up the plan; it lacks concrete detail. The rewrite goes in "
                f"<refine></refine> below.\n</analyze>\n"
                f"<refine>\n{first} and, wait, let me think: I want it to say {borrowed}. Hmm, maybe that is it.\n"
                f"</refine>\nThat should read better.")

    def _long_text(self, chars: int, answer: str, paragraphs: bool) -> str:
        """About ``chars`` characters of varied thinking (paragraphs separated by blank lines)."""
        words = answer.split() or ["the", "piece"]
        out, size, para = [], 0, []
        while size < chars:
            sentence = self._rng.choice(PARAGRAPHS).replace("---\n", "")
            detail = " ".join(self._rng.choice(words) for _ in range(self._rng.randint(3, 9)))
            para.append(f"{sentence} I keep {detail} in mind.")
            size += len(para[-1]) + 1
            if paragraphs and sum(len(x) for x in para) >= PARAGRAPH_CHARS:
                out.append(" ".join(para))
                para = []
        out.append(" ".join(para))
        return "\n\n".join(x for x in out if x)

    def next_fault(self) -> str | None:
        with self._lock:
            if self.faults:
                fault = str(self.faults.pop(0))
            elif self.fault_rate and self._fault_rng.random() < self.fault_rate:
                fault = self._fault_rng.choice(self.fault_kinds)
            else:
                return None
            self.injected.append(fault)
            return fault

    # --- how each server takes a request ----------------------------------------------------

    def _error(self, status: int, message: str, param: str | None = None, code=None) -> Refused:
        if self.flavor == "openai":
            return Refused(status, {"error": {"message": message, "type": "invalid_request_error", "param": param,
                                              "code": code}})
        if self.flavor == "llamacpp":
            kind = "server_error" if status >= 500 else "invalid_request_error"
            return Refused(status, {"error": {"code": status, "message": message, "type": kind}})
        return Refused(status, {"error": {"message": message, "type": "BadRequestError", "param": param,
                                          "code": status}})

    def model_card(self) -> dict:
        """The model's entry in ``/v1/models``, with the context where the server lists it there."""
        card = {"id": self.model, "object": "model"}
        if self.context_length and self.lists_context:
            if self.flavor == "llamacpp":
                card["meta"] = {"n_ctx_train": self.context_length, "n_vocab": 151936}
            elif self.flavor != "openai":
                card["max_model_len"] = self.context_length
        return card

    def props(self) -> dict:
        """llama.cpp's ``/props``: the slot's context in its default generation settings."""
        settings = {"n_ctx": self.context_length} if self.context_length and self.lists_context else {}
        return {"default_generation_settings": settings, "total_slots": 1, "model_path": self.model}

    def prompt_tokens(self, body: dict, endpoint: str) -> int:
        """The fake's token count of a prompt (what ``usage`` reports): a token per 4 characters,
        about what a real tokenizer makes of English."""
        if endpoint == "chat":
            return _tokens("\n".join(m["content"] for m in body["messages"] if m["role"] != "assistant"))
        return _tokens(body["prompt"])

    def check_context(self, body: dict, endpoint: str) -> None:
        """Refuse a request that passes the context, as the server words it."""
        if not self.context_length:
            return
        c, p = self.context_length, self.prompt_tokens(body, endpoint)
        m = self.length_limit(body) or 16
        over = p >= c if self.flavor == "llamacpp" else p + m > c
        if not over:
            return
        if not self.refusal_numbers:
            raise self._error(400, "the request exceeds the available context size, try increasing it")
        raise self.length_refusal(c, p, m)

    def length_refusal(self, c: int, p: int, m: int) -> Refused:
        if self.flavor == "llamacpp":
            return Refused(400, {"error": {"code": 400, "message": f"request ({p} tokens) exceeds the available "
                                           f"context size ({c} tokens), try increasing it",
                                           "type": "exceed_context_size_error", "n_prompt_tokens": p, "n_ctx": c}})
        if self.flavor == "openai":
            return self._error(400, f"This model's maximum context length is {c} tokens. However, you requested "
                                    f"{p + m} tokens ({p} in the messages, {m} in the completion). Please reduce the "
                                    "length of the messages or completion.", "messages", "context_length_exceeded")
        if p >= c:
            return self._error(400, f"This model's maximum context length is {c} tokens. However, your request has "
                                    f"{p} input tokens. Please reduce the length of the input messages.")
        return self._error(400, f"'max_tokens' or 'max_completion_tokens' is too large: {m}. This model's maximum "
                                f"context length is {c} tokens and your request has {p} input tokens ({m} > {c} - {p}).")

    def check(self, body: dict, endpoint: str) -> None:
        """Raise ``Refused`` where the real server would refuse the request."""
        self.check_context(body, endpoint)
        if self.flavor == "openai":
            if endpoint == "completions":
                raise self._error(404, "This is a chat model and not supported in the v1/completions endpoint. "
                                       "Did you mean to use v1/chat/completions?", "model")
            unknown = sorted(set(body) - OPENAI_CHAT_FIELDS)
            if unknown:
                raise self._error(400, f"Unrecognized request argument supplied: {', '.join(unknown)}")
            if self.model.startswith(("o1", "o3", "o4", "gpt-5")):
                if "max_tokens" in body:
                    raise self._error(400, "Unsupported parameter: 'max_tokens' is not supported with this model. "
                                           "Use 'max_completion_tokens' instead.", "max_tokens", "unsupported_parameter")
                for name in ("temperature", "top_p"):
                    if body.get(name, 1) != 1:
                        raise self._error(400, f"Unsupported value: '{name}' does not support {body[name]} with this "
                                               "model. Only the default (1) value is supported.", name,
                                          "unsupported_value")
        if self.flavor != "openai" and body.get("continue_final_message") and body.get("add_generation_prompt", True):
            raise self._error(400, "Cannot set both `continue_final_message` and `add_generation_prompt` to True.")
        if self.flavor == "llamacpp" and not self.llamacpp_n and (body.get("n") or 1) != 1:
            raise self._error(500, "Only one completion choice is allowed")
        if self.flavor == "llamacpp" and endpoint == "chat" and self._llamacpp_prefills(body):
            messages = body["messages"]
            if len(messages) > 1 and messages[-2].get("role") == "assistant":
                raise self._error(400, "Cannot have 2 or more assistant messages at the end of the list.")
            kwargs = body.get("chat_template_kwargs") or {}
            if self.thinking_template and kwargs.get("enable_thinking", True) is not False:
                raise self._error(400, "Assistant response prefill is incompatible with enable_thinking.")

    def _llamacpp_prefills(self, body: dict) -> bool:
        """llama.cpp takes the prefill path: a trailing assistant message, with the server's
        --prefill-assistant or (newer builds) the request's continue_final_message."""
        messages = body.get("messages") or []
        if not messages or messages[-1].get("role") != "assistant":
            return False
        asked = self.parses_continue and body.get("continue_final_message") and \
            body.get("add_generation_prompt") is False
        return self.prefill_assistant or bool(asked)

    def continues(self, body: dict, endpoint: str) -> str | None:
        """The prefill this request's output continues, if the server continues one."""
        if endpoint == "completions":
            return ""  # the prompt ends where the output starts
        messages = body.get("messages") or []
        last = messages[-1] if messages else {}
        if last.get("role") != "assistant":
            return None
        if (self.flavor == "llamacpp" and self._llamacpp_prefills(body)) or \
                (self.flavor == "vllm" and body.get("continue_final_message")):
            return last.get("content") or ""
        return None  # an earlier turn: the model starts a new message

    def respond(self, body: dict, endpoint: str, fault: str | None = None) -> dict:
        if endpoint == "chat":
            prompt = "\n".join(m["content"] for m in body["messages"] if m["role"] != "assistant")
        else:
            prompt = body["prompt"]
        prefill = self.continues(body, endpoint)
        task = _between(prompt, "<task>\n", "\n</task>") or ""
        answer = _between(prompt, "<answer>\n", "\n</answer>") or _between(prompt, "<target_answer>\n", "\n</target_answer>") or ""
        segment = _between(prompt, "<replace>\n", "\n</replace>")
        kind = "edit" if segment is not None else "draft" if "<answer>\n" in prompt else "other"
        n = body.get("n") or 1
        n_out = n if self.supports_n else 1
        stops = body.get("stop") or []
        stops = [stops] if isinstance(stops, str) else stops
        logged = (Logged(kind, endpoint, task, segment, n_out, prompt, body, prefill is not None) if self.keep_prompts
                  else Logged(kind, endpoint, "", None, n_out, "", {}, prefill is not None))
        with self._lock:
            self.log.append(logged)
            texts = []
            for _ in range(n_out):
                if fault == "notags":
                    texts.append("I would rather just write the answer directly.")
                elif kind == "draft":
                    # Left to run on, a model closes its thinking and writes the answer.
                    t = self._draft(answer) + "\n</think>\n\n" + answer
                    if prefill is None:  # a new message, in the model's own words
                        t = ("So," if self.template_opens_think else "<think>\nSo,") + t
                    texts.append(t)
                elif kind == "edit":
                    t = self._edit(segment or "", answer)
                    texts.append(t if prefill and prefill.endswith("<analyze>\n") else "<analyze>\n" + t)
                else:
                    texts.append("Hello there, nice to meet you. I hope the sea is calm where you are today.")
        texts = [_cut_at(t, stops) for t in texts]
        toks = [max(1, len(t.split())) * 2 for t in texts]
        if kind == "draft":
            toks = [max(t, 150) for t in toks]
        finish = "stop"
        limit = self.length_limit(body)
        if kind == "other" and limit and max(toks) > limit:  # the preflight: cut where the server reads a limit
            texts, toks, finish = [" ".join(t.split()[: max(1, limit // 2)]) for t in texts], [limit] * len(texts), "length"
        if fault == "length":
            texts, finish = [t[: len(t) // 3] for t in texts], "length"
        if endpoint == "chat":
            choices = [{"index": i, "message": self._message(t, prefill), "finish_reason": finish}
                       for i, t in enumerate(texts)]
            obj = "chat.completion"
        else:
            choices = [{"index": i, "text": t, "finish_reason": finish, "logprobs": None} for i, t in enumerate(texts)]
            obj = "text_completion"
        if fault == "empty":
            choices = []
        prompt_tokens = _tokens(prompt)
        logged.usage = {"prompt_tokens": prompt_tokens, "completion_tokens": sum(toks)}
        return {"id": f"fake-{len(self.log)}", "object": obj, "created": int(time.time()), "model": self.model,
                "choices": choices, "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": sum(toks),
                                              "total_tokens": prompt_tokens + sum(toks)}}

    def length_limit(self, body: dict) -> int | None:
        """The length field this server reads (the newer name first, where it reads it)."""
        if self.reads_max_completion_tokens and body.get("max_completion_tokens") is not None:
            return body["max_completion_tokens"]
        return body.get("max_tokens")

    def _message(self, text: str, prefill: str | None) -> dict:
        """The assistant message, with the thinking split off as a reasoning parser does."""
        if prefill and self.flavor == "llamacpp":
            # llama.cpp returns the continued message whole, and its prefill path forces
            # reasoning_format none: nothing is split off.
            return {"role": "assistant", "content": prefill + text}
        if self.reasoning_field is None:
            return {"role": "assistant", "content": text}
        in_thinking = ("<think>" in prefill and "</think>" not in prefill) if prefill is not None \
            else self.template_opens_think
        if not in_thinking and text.lstrip().startswith("<think>"):
            text, in_thinking = text.lstrip()[len("<think>"):], True
        if not in_thinking:
            return {"role": "assistant", "content": text, self.reasoning_field: None}
        end = text.find("</think>")
        reasoning, content = (text, "") if end < 0 else (text[:end], text[end + len("</think>"):])
        return {"role": "assistant", "content": content or None, self.reasoning_field: reasoning}

    def _handler(self):
        fake = self

        class Handler(JSONHandler):
            def do_GET(self):
                fake.hang_if_due(len(fake.log))
                if self.path.rstrip("/") == "/v1/models":
                    return self._send(200, {"object": "list", "data": [fake.model_card()]})
                if self.path.rstrip("/") == "/props" and fake.flavor == "llamacpp":
                    return self._send(200, fake.props())
                self._send(404, {"error": {"message": "not found"}})

            def do_POST(self):
                with fake._lock:
                    fake.busy += 1
                try:
                    self._post()
                finally:
                    with fake._lock:
                        fake.busy -= 1

            def _post(self):
                body = self._body()
                fake.hang_if_due(len(fake.log))
                if fake.api_key and self.headers.get("Authorization") != f"Bearer {fake.api_key}":
                    return self._send(401, {"error": {"message": "invalid api key"}})
                endpoint = {"/v1/chat/completions": "chat", "/v1/completions": "completions"}.get(self.path)
                if endpoint is None:
                    return self._send(404, {"error": {"message": "not found"}})
                try:
                    fake.check(body, endpoint)
                except Refused as exc:
                    with fake._lock:
                        fake.refused.append(body)
                    return self._send(exc.status, exc.body)
                text = json.dumps(body)
                fault = fake.next_fault() if ("<replace>" in text or "<answer>" in text) else None
                if fault and fault[0].isdigit():
                    status = int(fault.split("-")[0])
                    headers = {"Retry-After": "1"} if fault.endswith("retry-after") else {}
                    return self._send(status, {"error": {"message": f"injected {fault}"}}, headers)
                if fault == "hang":
                    time.sleep(fake.hang_s)
                if fault == "reset":
                    self.close_connection = True
                    return  # no response at all: the client sees the connection drop
                if fake.delay_s:
                    time.sleep(fake.delay_s)
                if fault == "garbage":
                    return self._send(200, b"<html><body>502 Bad Gateway</body></html>")
                data = json.dumps(fake.respond(body, endpoint, fault)).encode()
                if fault == "truncated":
                    data = data[: len(data) // 2]
                self._send(200, data)

        return Handler


def _tokens(text: str) -> int:
    return (len(text) + 3) // 4


def _between(text: str, start: str, end: str) -> str | None:
    m = re.search(re.escape(start) + r"(.*?)" + re.escape(end), text, re.DOTALL)
    return m.group(1) if m else None


def _cut_at(text: str, stops: list[str]) -> str:
    """The output as a server returns it with stop strings: up to the first one, excluded."""
    cuts = [i for i in (text.find(s) for s in stops if s) if i >= 0]
    return text[: min(cuts)] if cuts else text


def main() -> None:
    import argparse

    p = argparse.ArgumentParser(description="A fault-injecting OpenAI-compatible server on 127.0.0.1")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--flavor", default="vllm", choices=["vllm", "llamacpp", "openai"])
    p.add_argument("--fault-rate", type=float, default=0.0)
    p.add_argument("--delay-s", type=float, default=0.0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--model", default="fake-model")
    p.add_argument("--context-length", type=int, default=None)
    p.add_argument("--draft-chars", type=int, default=0)
    a = p.parse_args()
    fake = FakeOpenAI(port=a.port, flavor=a.flavor, fault_rate=a.fault_rate, delay_s=a.delay_s, seed=a.seed,
                      model=a.model, context_length=a.context_length, draft_chars=a.draft_chars)
    serve_until_killed(fake, fake.url)


if __name__ == "__main__":
    main()
