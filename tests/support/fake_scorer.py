"""An instant scorer on a loopback port that speaks the scorer's protocol (``scorer.protocol``:
``/health``, ``/check``, ``/score``, the same schema as the real server and the client): a
score is a deterministic function of the text, no model involved.
For measuring the agents and the store alone (bench/pipeline.py) and for tests.

    python -m tests.support.fake_scorer --port 0      # prints REER_URL=http://127.0.0.1:PORT
"""

from __future__ import annotations

import hashlib

from scorer.protocol import CheckRequest, CheckResponse, Health, Limits, ScoreRequest, ScoreResponse
from tests.support.loopback import JSONHandler, LoopbackServer, serve_until_killed


def fake_score(thinking: str) -> float:
    """In [0.3, 2.0), stable for a text: some rewrites beat the draft, some do not."""
    h = int.from_bytes(hashlib.blake2b(thinking.encode(), digest_size=4).digest(), "big")
    return 0.3 + 1.7 * h / 2**32


class FakeScorer(LoopbackServer):
    def __init__(self, port: int = 0):
        self.calls = 0
        fake = self

        class Handler(JSONHandler):
            def do_GET(self):
                self._send(200, Health(status="ok", model="fake", limits=Limits()).model_dump())

            def do_POST(self):
                fake.calls += 1
                if self.path == "/check":
                    items = CheckRequest.model_validate(self._body()).items
                    tokens = [len(it.answer.split()) for it in items]
                    return self._send(200, CheckResponse(tokens=tokens, errors=[None] * len(items),
                                                         max_context=1 << 20).model_dump())
                items = ScoreRequest.model_validate(self._body()).items
                self._send(200, ScoreResponse(scores=[fake_score(it.thinking) for it in items], errors=[None] * len(items),
                                              tokens=[len(it.answer.split()) for it in items]).model_dump())

        self.url = self._listen(port, Handler)


def main() -> None:
    import argparse

    p = argparse.ArgumentParser(description="An instant fake scorer on 127.0.0.1")
    p.add_argument("--port", type=int, default=0)
    fake = FakeScorer(p.parse_args().port)
    serve_until_killed(fake, fake.url)


if __name__ == "__main__":
    main()
