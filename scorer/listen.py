"""Listening safely: a socket on a host and the URL it is reached at, whether a host is this
machine only, and a bearer token compared in constant time. Standard library only, so that a
server that is not the scorer (``reer serve``) shares them without loading the scorer."""

from __future__ import annotations

import hmac
import ipaddress
import socket


def listen(host: str, port: int) -> tuple[socket.socket, str]:
    """A listening socket on ``host`` (IPv4 or IPv6) and the URL clients reach it at."""
    family, kind, proto, _, addr = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(addr)
    sock.listen(1024)  # every concurrent search holds a connection
    shown = {"0.0.0.0": "127.0.0.1", "::": "::1"}.get(host, host)
    shown = f"[{shown}]" if ":" in shown else shown
    return sock, f"http://{shown}:{sock.getsockname()[1]}"


def is_loopback(host: str) -> bool:
    try:
        return all(ipaddress.ip_address(info[4][0]).is_loopback for info in socket.getaddrinfo(host, None))
    except (socket.gaierror, ValueError):
        return False


def same_secret(given: str, expected: str) -> bool:
    """``given`` is ``expected``, compared in constant time (no timing tells how much matched)."""
    return hmac.compare_digest(given.encode(), expected.encode())
