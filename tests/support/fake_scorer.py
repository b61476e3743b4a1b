"""An instant scorer on a loopback port that speaks the scorer's protocol (``scorer.protocol``:
``/health``, ``/check``, ``/score``, the same schema as the real server and the client): a
score is a deterministic function of the text, no model involved.
For measuring the agents and the store alone (bench/pipeline.py) and for tests.

    python -m tests.support.fake_scorer --port 0      # prints REER_URL=http://127.0.0.1:PORT
"""

from __future__ import annotations

import hashlib
import threading
from collections import Counter

from prompts import SCORING_PROMPTS, PromptSet
from scorer.protocol import CheckRequest, CheckResponse, Health, Limits, ScoreRequest, ScoreResponse
from tests.support.loopback import Hangs, JSONHandler, LoopbackServer, serve_until_killed


def fake_score(thinking: str) -> float:
    """In [0.3, 2.0), stable for a text: some rewrites beat the draft, some do not."""
    h = int.from_bytes(hashlib.blake2b(thinking.encode(), digest_size=4).digest(), "big")
    return 0.3 + 1.7 * h / 2**32


class FakeScorer(Hangs, LoopbackServer):
    """``/health`` says what the real server says of itself (model, scoring prompt by name and
    text, single-segment rule); ``records`` counts the /score requests of each question.
    ``hang_after``: once it has taken that many POSTs it accepts requests and never answers
    (a deadlocked scorer), until ``answer_again``; ``health_answers``: its ``/health`` answers
    meanwhile (the server's event loop alive, its scoring stuck)."""

    def __init__(self, port: int = 0, model: str = "fake", hang_after: int | None = None,
                 health_answers: bool = False):
        self.calls = 0
        self.hang_after = hang_after
        self.health_answers = health_answers
        self._unhang = threading.Event()
        self.dead = False
        self.records: Counter[str] = Counter()
        fake = self
        identity = {"scoring_prompt": "brief", "single_segment_answer": "whole",
                    "scoring_prompt_id": PromptSet().identity(SCORING_PROMPTS["brief"])}

        class Handler(JSONHandler):
            def handle_one_request(self):
                if fake.dead:  # killed: every connection drops without an answer
                    self.close_connection = True
                    return
                super().handle_one_request()

            def do_GET(self):
                if not fake.health_answers:
                    fake.hang_if_due(fake.calls)
                self._send(200, Health(status="ok", model=model, limits=Limits(), **identity).model_dump())

            def do_POST(self):
                fake.hang_if_due(fake.calls)
                fake.calls += 1
                if self.path == "/check":
                    items = CheckRequest.model_validate(self._body()).items
                    tokens = [len(it.answer.split()) for it in items]
                    return self._send(200, CheckResponse(tokens=tokens, errors=[None] * len(items),
                                                         max_context=1 << 20).model_dump())
                items = ScoreRequest.model_validate(self._body()).items
                fake.records[items[0].question] += 1
                self._send(200, ScoreResponse(scores=[fake_score(it.thinking) for it in items], errors=[None] * len(items),
                                              tokens=[len(it.answer.split()) for it in items]).model_dump())

        self.url = self._listen(port, Handler)


    def kill(self) -> None:
        """Stop answering, as a killed process would: open connections drop, new ones are refused."""
        self.dead = True
        self.__exit__(None, None, None)


def main() -> None:
    import argparse

    p = argparse.ArgumentParser(description="An instant fake scorer on 127.0.0.1")
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--model", default="fake")
    a = p.parse_args()
    fake = FakeScorer(a.port, a.model)
    serve_until_killed(fake, fake.url)


if __name__ == "__main__":
    main()
