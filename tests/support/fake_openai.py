"""A real OpenAI-compatible server on a loopback port, for tests: ``/v1/models``,
``/v1/chat/completions`` and ``/v1/completions``, over real HTTP.

It writes plausible REER outputs: a multi-paragraph thinking for a draft request (recognised by
its ``</think>`` stop) and an ``<analyze>``/``<refine>`` edit for an edit request (``</refine>``
stop). Every request is logged, so tests can count what was generated. Faults are injected
either from a queue (``faults``: HTTP statuses or fault names, in order) or at random
(``fault_rate`` of the requests, a kind drawn from ``fault_kinds``):

    "429" "429-retry-after" "500" "502" "503"   an error status (429-retry-after sets Retry-After: 1)
    "hang"        answer only after ``hang_s`` (longer than the client's timeout)
    "reset"       close the connection without a response
    "garbage"     200 with a body that is not JSON
    "truncated"   200 with half a JSON body
    "empty"       200 with an empty ``choices`` list
    "length"      a cut-off output (``finish_reason: length``)
    "notags"      an output without <think>/<refine>

Run it alone for a soak test: ``python -m tests.support.fake_openai --port 8000 --fault-rate 0.2``.
"""

from __future__ import annotations

import json
import random
import re
import threading
import time
from dataclasses import dataclass, field

from tests.support.loopback import JSONHandler, LoopbackServer, serve_until_killed

FAULT_KINDS = ["429", "429-retry-after", "500", "502", "503", "hang", "reset", "garbage", "truncated", "empty",
               "length", "notags"]

PARAGRAPHS = [
    "the user wants something short and vivid, so I should first decide who will read it and what they expect from the very first line.",
    "Hmm, maybe I should open with a concrete image instead of a statement. Wait, let me think about which image carries the whole piece.",
    "Next I will settle the structure: an opening, a turn in the middle, and an ending that echoes the start. But wait, the ending must surprise a little.",
    "Alternatively, I could let the middle carry the emotion and keep the ending quiet. Let me think about the rhythm of each sentence before I draft.",
    "---\nDraft outline: open on the image, widen to the situation, turn on a single detail, close by returning to the first image with new meaning.",
]


@dataclass
class Logged:
    kind: str  # "draft" | "edit" | "other"
    endpoint: str  # "chat" | "completions"
    task: str
    segment: str | None
    n: int
    prompt: str


@dataclass
class FakeOpenAI(LoopbackServer):
    model: str = "fake-model"
    supports_n: bool = True
    delay_s: float = 0.0
    seed: int = 0
    faults: list = field(default_factory=list)  # statuses or fault names for the next requests, in order
    fault_rate: float = 0.0
    fault_kinds: list[str] = field(default_factory=lambda: list(FAULT_KINDS))
    hang_s: float = 3.0
    api_key: str | None = None  # when set, requests must carry it
    port: int = 0
    log: list[Logged] = field(default_factory=list)
    injected: list[str] = field(default_factory=list)

    def __post_init__(self):
        self._lock = threading.Lock()
        self._rng = random.Random(self.seed)
        self._fault_rng = random.Random(self.seed + 1)
        self.url = self._listen(self.port, self._handler()) + "/v1"

    def count(self, kind: str) -> int:
        with self._lock:
            return sum(1 for r in self.log if r.kind == kind)

    def choices_generated(self, kind: str) -> int:
        with self._lock:
            return sum(r.n for r in self.log if r.kind == kind)

    # --- what it writes -------------------------------------------------------------------

    def _draft(self, answer: str) -> str:
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
        return (f"<analyze>\nThe passage sets up the plan; it lacks concrete detail.\n</analyze>\n"
                f"<refine>\n{first} and, wait, let me think: I want it to say {borrowed}. Hmm, maybe that is it.\n")

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

    def respond(self, body: dict, endpoint: str, fault: str | None = None) -> dict:
        if endpoint == "chat":
            prompt = "\n".join(m["content"] for m in body["messages"])
        else:
            prompt = body["prompt"]
        stop = body.get("stop") or []
        task = _between(prompt, "<task>\n", "\n</task>") or ""
        answer = _between(prompt, "<answer>\n", "\n</answer>") or _between(prompt, "<target_answer>\n", "\n</target_answer>") or ""
        segment = _between(prompt, "<replace>\n", "\n</replace>")
        kind = "draft" if "</think>" in stop else "edit" if "</refine>" in stop else "other"
        n = body.get("n") or 1
        n_out = n if self.supports_n else 1
        with self._lock:
            self.log.append(Logged(kind, endpoint, task, segment, n_out, prompt))
            texts = []
            for _ in range(n_out):
                if fault == "notags":
                    texts.append("I would rather just write the answer directly.")
                elif kind == "draft":
                    t = self._draft(answer)
                    texts.append(t if endpoint == "completions" else "<think>\nAlright," + t)
                elif kind == "edit":
                    texts.append(self._edit(segment or "", answer))
                else:
                    texts.append("Hello.")
        toks = [max(1, len(t.split())) * 2 for t in texts]
        if kind == "draft":
            toks = [max(t, 150) for t in toks]
        finish = "stop"
        if fault == "length":
            texts, finish = [t[: len(t) // 3] for t in texts], "length"
        if endpoint == "chat":
            choices = [{"index": i, "message": {"role": "assistant", "content": t}, "finish_reason": finish}
                       for i, t in enumerate(texts)]
            obj = "chat.completion"
        else:
            choices = [{"index": i, "text": t, "finish_reason": finish, "logprobs": None} for i, t in enumerate(texts)]
            obj = "text_completion"
        if fault == "empty":
            choices = []
        return {"id": f"fake-{len(self.log)}", "object": obj, "created": int(time.time()), "model": self.model,
                "choices": choices, "usage": {"prompt_tokens": len(prompt.split()), "completion_tokens": sum(toks),
                                              "total_tokens": len(prompt.split()) + sum(toks)}}

    def _handler(self):
        fake = self

        class Handler(JSONHandler):
            def do_GET(self):
                if self.path.rstrip("/") == "/v1/models":
                    return self._send(200, {"object": "list", "data": [{"id": fake.model, "object": "model"}]})
                self._send(404, {"error": {"message": "not found"}})

            def do_POST(self):
                body = self._body()
                if fake.api_key and self.headers.get("Authorization") != f"Bearer {fake.api_key}":
                    return self._send(401, {"error": {"message": "invalid api key"}})
                endpoint = {"/v1/chat/completions": "chat", "/v1/completions": "completions"}.get(self.path)
                if endpoint is None:
                    return self._send(404, {"error": {"message": "not found"}})
                fault = fake.next_fault()
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


def _between(text: str, start: str, end: str) -> str | None:
    m = re.search(re.escape(start) + r"(.*?)" + re.escape(end), text, re.DOTALL)
    return m.group(1) if m else None


def main() -> None:
    import argparse

    p = argparse.ArgumentParser(description="A fault-injecting OpenAI-compatible server on 127.0.0.1")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--fault-rate", type=float, default=0.0)
    p.add_argument("--delay-s", type=float, default=0.0)
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args()
    fake = FakeOpenAI(port=a.port, fault_rate=a.fault_rate, delay_s=a.delay_s, seed=a.seed)
    serve_until_killed(fake, fake.url)


if __name__ == "__main__":
    main()
