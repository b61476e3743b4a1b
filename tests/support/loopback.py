"""What the loopback test servers share: a threaded HTTP server on 127.0.0.1 that takes many
connections at once, started on ``with`` entry and stopped on exit."""

from __future__ import annotations

import json
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class JSONHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body go out in two writes: no 40 ms delayed-ACK stall

    def log_message(self, *a):
        pass

    def _send(self, status: int, body, headers: dict | None = None) -> None:
        """A JSON body (or raw bytes, for faults), with its length."""
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(data)

    def _body(self):
        return json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))))


class QuietServer(ThreadingHTTPServer):
    request_queue_size = 1024  # every concurrent search holds a connection
    daemon_threads = True

    def handle_error(self, request, client_address) -> None:
        if not isinstance(sys.exc_info()[1], (BrokenPipeError, ConnectionResetError)):
            super().handle_error(request, client_address)  # a client that hung up is expected here


class LoopbackServer:
    _httpd: QuietServer

    def _listen(self, port: int, handler) -> str:
        """Bind 127.0.0.1:``port`` (0: any free port); returns the base URL."""
        self._httpd = QuietServer(("127.0.0.1", port), handler)
        return f"http://127.0.0.1:{self._httpd.server_address[1]}"

    def __enter__(self):
        threading.Thread(target=self._httpd.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()


_HELD_LOCK = threading.Lock()


class Hangs:
    """A loopback server that stands for a hung part: once it has answered ``hang_after``
    requests it accepts new ones and never answers, until ``answer_again``. The server sets
    ``hang_after`` and ``_unhang`` (a ``threading.Event``), and calls ``hang_if_due`` with its
    own count of what it answered. ``held``: the requests the hang holds now."""

    hang_after: int | None
    _unhang: threading.Event
    held = 0

    def hang_if_due(self, answered: int) -> None:
        if self.hang_after is not None and answered >= self.hang_after:
            with _HELD_LOCK:
                self.held += 1
            try:
                self._unhang.wait()
            finally:
                with _HELD_LOCK:
                    self.held -= 1

    def answer_again(self) -> None:
        self.hang_after = None
        self._unhang.set()

    def __exit__(self, *exc) -> None:
        self._unhang.set()  # a request held by the hang ends with the server
        super().__exit__(*exc)


def serve_until_killed(server: LoopbackServer, url: str) -> None:
    """For running a test server alone: print its URL as the scorer does, then serve."""
    with server:
        print(f"REER_URL={url}", flush=True)
        threading.Event().wait()
