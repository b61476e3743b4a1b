"""An instant scorer on a loopback port that speaks the scorer's protocol (``/health``,
``/check``, ``/score``): a score is a deterministic function of the text, no model involved.
For measuring the agents and the store alone (bench/pipeline.py) and for tests.

    python -m tests.support.fake_scorer --port 0      # prints REER_URL=http://127.0.0.1:PORT
"""

from __future__ import annotations

import hashlib
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def fake_score(thinking: str) -> float:
    """In [0.3, 2.0), stable for a text: some rewrites beat the draft, some do not."""
    h = int.from_bytes(hashlib.blake2b(thinking.encode(), digest_size=4).digest(), "big")
    return 0.3 + 1.7 * h / 2**32


class _Server(ThreadingHTTPServer):
    request_queue_size = 1024  # every concurrent search holds a connection
    daemon_threads = True


class FakeScorer:
    def __init__(self, port: int = 0):
        self.calls = 0
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True  # headers and body go out in two writes: no 40 ms delayed-ACK stall

            def log_message(self, *a):
                pass

            def _send(self, body: dict) -> None:
                data = json.dumps(body).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self):
                self._send({"status": "ok", "model": "fake"})

            def do_POST(self):
                items = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))))["items"]
                fake.calls += 1
                if self.path == "/check":
                    return self._send({"tokens": [len(it["answer"].split()) for it in items], "max_context": 1 << 20})
                self._send({"scores": [fake_score(it["thinking"]) for it in items],
                            "tokens": [len(it["answer"].split()) for it in items]})

        self._httpd = _Server(("127.0.0.1", port), Handler)
        self.url = f"http://127.0.0.1:{self._httpd.server_address[1]}"

    def __enter__(self) -> "FakeScorer":
        threading.Thread(target=self._httpd.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()


def main() -> None:
    import argparse

    p = argparse.ArgumentParser(description="An instant fake scorer on 127.0.0.1")
    p.add_argument("--port", type=int, default=0)
    a = p.parse_args()
    with FakeScorer(a.port) as fake:
        print(f"REER_URL={fake.url}", flush=True)
        threading.Event().wait()


if __name__ == "__main__":
    main()
