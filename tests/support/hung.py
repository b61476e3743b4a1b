"""A loopback server that accepts every connection and never answers: a deadlocked GPU
process, a frozen queue, a load balancer holding connections open. Unlike a dead port, the
client's connect succeeds, so only a deadline finds it."""

from __future__ import annotations

import socket
import threading


class HungServer:
    """``url``: http://127.0.0.1:PORT (``path`` appended, e.g. "/v1" for an endpoint).
    ``accepted`` counts the connections it took and holds."""

    def __init__(self, path: str = ""):
        self._sock = socket.create_server(("127.0.0.1", 0), backlog=1024)
        self.url = f"http://127.0.0.1:{self._sock.getsockname()[1]}{path}"
        self.accepted = 0
        self._held: list[socket.socket] = []
        self._stop = threading.Event()

    def _accept(self) -> None:
        self._sock.settimeout(0.1)
        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except (TimeoutError, OSError):
                continue
            self.accepted += 1
            self._held.append(conn)  # read nothing, answer nothing, close nothing

    def __enter__(self) -> "HungServer":
        threading.Thread(target=self._accept, daemon=True).start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        for conn in self._held:
            conn.close()
        self._sock.close()
