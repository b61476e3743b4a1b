"""A loopback TCP proxy in front of this machine's PostgreSQL that a test cuts and restores: what a
server restart, a failover or a network hiccup looks like to a worker.

    with PgProxy() as proxy:
        url = proxy.url(schema_url)     # the same database, through the proxy
        proxy.cut()                     # every connection reset, new ones refused
        proxy.restore()                 # connections go through again
"""

from __future__ import annotations

import socket
import struct
import threading
from urllib.parse import urlsplit, urlunsplit

UPSTREAM = ("127.0.0.1", 5432)


def _reset(sock: socket.socket) -> None:
    """Close with a RST, as a dropped server or a cut link does. The shutdown first: a close
    alone neither wakes the pipe thread blocked reading the socket nor reaches the peer while
    that read holds it open."""
    for step in (lambda: sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0)),
                 lambda: sock.shutdown(socket.SHUT_RDWR)):
        try:
            step()
        except OSError:
            pass
    sock.close()


class PgProxy:
    def __init__(self, upstream: tuple[str, int] = UPSTREAM):
        self.upstream = upstream
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.cuts = 0
        self._down = False
        self._lock = threading.Lock()
        self._open: set[socket.socket] = set()
        self._closed = False

    def url(self, url: str) -> str:
        """``url`` (on the upstream's host and port) through the proxy."""
        parts = urlsplit(url)
        netloc = parts.netloc.replace(f"{self.upstream[0]}:{self.upstream[1]}", f"127.0.0.1:{self.port}")
        return urlunsplit(parts._replace(netloc=netloc))

    def cut(self) -> None:
        """Reset every connection through the proxy; refuse new ones until ``restore``."""
        with self._lock:
            self._down, self.cuts = True, self.cuts + 1
            sockets, self._open = list(self._open), set()
        for s in sockets:
            _reset(s)

    def restore(self) -> None:
        with self._lock:
            self._down = False

    def __enter__(self) -> "PgProxy":
        threading.Thread(target=self._accept, daemon=True).start()
        return self

    def __exit__(self, *exc) -> None:
        self._closed = True
        self.cut()
        self.listener.close()

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            with self._lock:
                down = self._down
            if down:
                _reset(client)
                continue
            try:
                server = socket.create_connection(self.upstream)
            except OSError:
                _reset(client)
                continue
            with self._lock:
                self._open.update((client, server))
            for a, b in ((client, server), (server, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    def _pipe(self, src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        for s in (src, dst):
            with self._lock:
                self._open.discard(s)
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            s.close()
