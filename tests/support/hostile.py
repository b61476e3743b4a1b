"""Requests a hostile or careless client sends a scorer, as raw bytes over a socket; for the
scorer's load test and ``bench/soak.py``."""

from __future__ import annotations

import contextlib
import select
import socket

import httpx

ANSWER = ("The sea at dawn is a held breath,\nsilver on silver, waiting.\n\nThen the gulls come, and the boats, "
          "and the long day opens like a door.")
KINDS = ("declared", "streamed", "slow", "malformed", "many")


def rss_mb(pid: int) -> tuple[int, int]:
    """(resident now, resident at its peak) in MiB."""
    status = dict(line.split(":", 1) for line in open(f"/proc/{pid}/status"))
    return int(status["VmRSS"].split()[0]) >> 10, int(status["VmHWM"].split()[0]) >> 10


def hostile(url: str, kind: str, mb: float) -> int:
    """One hostile request; the status it got (0: the connection was closed without one)."""
    big = int(mb * (1 << 20))
    host, port = url.removeprefix("http://").rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=60) as s:
        if kind == "declared":  # says it is huge, sends nothing
            s.sendall(b"POST /check HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % (50 * big))
        elif kind == "streamed":  # no length, more than the limit, in chunks
            s.sendall(b"POST /check HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n")
            piece = b"x" * (1 << 20)
            with contextlib.suppress(OSError):  # the server may answer and close before the end
                for _ in range(int(mb) + 2):
                    s.sendall(b"%x\r\n%s\r\n" % (len(piece), piece))
                s.sendall(b"0\r\n\r\n")
        elif kind == "slow":  # a large body that trickles
            s.sendall(b"POST /check HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % big)
            s.sendall(b"{" * (3 << 19))  # past 1 MiB: it holds a large-request slot
            with contextlib.suppress(OSError):
                while not select.select([s], [], [], 0.25)[0]:  # until the server answers
                    s.sendall(b"{" * 1000)
        elif kind in ("malformed", "many"):  # under the limit: not JSON, or far more items than allowed
            item = b'{"question":"q","answer":"a"},'
            body = b"[" * (big - 1024) if kind == "malformed" else b'{"items":[' + item * ((big - 1024) // len(item)) + b"{}]}"
            s.sendall(b"POST /check HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
        answer = s.recv(64)
    return int(answer.split()[1]) if answer.startswith(b"HTTP/1.1") else 0


def valid_large(url: str, mb: float) -> int:
    answer = ANSWER * 40
    n = int(mb * (1 << 20) * 0.9) // (len(answer) + 40)
    body = {"items": [{"question": f"q{i}", "answer": answer, "lang": "en"} for i in range(n)]}
    return httpx.post(f"{url}/check", json=body, timeout=120).status_code
