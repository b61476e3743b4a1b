"""A loopback TCP proxy in front of this machine's PostgreSQL that a test cuts and restores: what a
server restart, a failover or a network hiccup looks like to a worker.

    with PgProxy() as proxy:
        url = proxy.url(schema_url)     # the same database, through the proxy
        proxy.cut()                     # every connection reset, new ones refused
        proxy.restore()                 # connections go through again
        cut = proxy.cut_at(b"INSERT INTO step", b"COMMIT", reply=True)  # cut at that point of a run
        cut.wait()                      # set once it has cut

``cut_at`` puts the cut where a test needs it, not wherever a timer falls: at a statement the
client sends (its SQL text, as the driver sends it), so a test can say which phase it cuts.
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
        self._markers: list[bytes] = []  # what cut_at waits for the client to send, in turn
        self._reply = False
        self._on: socket.socket | None = None  # the connection the first marker came on: the rest must too
        self._armed = threading.Event()
        self._doomed: socket.socket | None = None  # the server whose answer is lost, then the cut

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

    def cut_at(self, *markers: bytes, reply: bool = False) -> threading.Event:
        """Cut (as :meth:`cut`) once the client has sent each of ``markers`` in turn (the first
        on any connection, the rest on the same one: one transaction's statements): at the last,
        before the server sees it, or with ``reply`` once the server has answered it, the answer
        lost (a statement, or a commit, that landed unseen). The event is set at the cut."""
        with self._lock:
            self._markers, self._reply, self._armed, self._on = list(markers), reply, threading.Event(), None
            return self._armed

    def restore(self) -> None:
        with self._lock:
            self._down = False

    def _watch(self, seen: bytes, server: socket.socket) -> tuple[bool, bytes]:
        """Whether what the client sent (``seen``) reaches the last marker, to cut before the
        server sees it (with ``reply``, the server's answer to it is what cuts); and what of
        ``seen`` to search again with the next read."""
        with self._lock:
            while self._markers and self._markers[0] in seen and self._on in (None, server):
                seen = seen[seen.index(self._markers[0]) + len(self._markers[0]):]
                self._markers.pop(0)
                self._on = server
                if not self._markers:
                    if not self._reply:
                        return True, b""
                    self._doomed = server
        return False, seen[-256:]

    def _cut_armed(self) -> None:
        with self._lock:
            self._doomed, armed = None, self._armed
        self.cut()
        armed.set()

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
            for a, b, upstream in ((client, server, True), (server, client, False)):
                threading.Thread(target=self._pipe, args=(a, b, upstream), daemon=True).start()

    def _pipe(self, src: socket.socket, dst: socket.socket, upstream: bool) -> None:
        tail = b""  # the end of what came before: a marker split across two reads is still found
        try:
            while data := src.recv(65536):
                if upstream:
                    cut_now, tail = self._watch(tail + data, dst)
                else:
                    with self._lock:
                        cut_now = self._doomed is src
                if cut_now:
                    self._cut_armed()
                    break
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
