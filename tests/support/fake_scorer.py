"""An instant scorer on a loopback port that speaks the scorer's protocol (``/health``,
``/check``, ``/score``): a score is a deterministic function of the text, no model involved.
For measuring the agents and the store alone (bench/pipeline.py) and for tests.

    python -m tests.support.fake_scorer --port 0      # prints REER_URL=http://127.0.0.1:PORT
"""

from __future__ import annotations

import hashlib

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
                self._send(200, {"status": "ok", "model": "fake"})

            def do_POST(self):
                items = self._body()["items"]
                fake.calls += 1
                if self.path == "/check":
                    return self._send(200, {"tokens": [len(it["answer"].split()) for it in items], "max_context": 1 << 20})
                self._send(200, {"scores": [fake_score(it["thinking"]) for it in items],
                                 "tokens": [len(it["answer"].split()) for it in items]})

        self.url = self._listen(port, Handler)


def main() -> None:
    import argparse

    p = argparse.ArgumentParser(description="An instant fake scorer on 127.0.0.1")
    p.add_argument("--port", type=int, default=0)
    fake = FakeScorer(p.parse_args().port)
    serve_until_killed(fake, fake.url)


if __name__ == "__main__":
    main()
