"""A pool of HTTP clients, each with a few connections, handed out least busy first.

httpx/httpcore scan every pooled connection on each request event (and count the idle ones
in a quadratic loop), so one client holding a connection per in-flight record spends more
CPU on its pool than on the request once dozens of records are in flight. Several small
clients keep every scan short while still letting every record have a request in flight
(the scorer batches across them, so they must all reach it).
"""

from __future__ import annotations

import contextlib
import functools
import math
import ssl
import urllib.request
from typing import AsyncIterator, Callable, Generic, Mapping, TypeVar

import httpx

from agents.transport import AsyncioTransport

C = TypeVar("C")
CONNECTIONS_PER_CLIENT = 4
MAX_CLIENTS = 32  # beyond this, clients get more connections each (building one costs milliseconds)


@functools.cache
def tls_context() -> ssl.SSLContext:
    """One verifying TLS context for every client: building one per client costs ~25 ms."""
    return ssl.create_default_context()


def http_client(connections: int, timeout: httpx.Timeout, headers: Mapping[str, str] | None = None) -> httpx.AsyncClient:
    """One httpx client of a pool: ``connections`` kept alive, HTTP/1.1 on asyncio directly.
    httpx ignores the proxies set in the environment when it is given a transport, so with a
    proxy set it keeps its own transport (on anyio), which honours them and NO_PROXY."""
    limits = httpx.Limits(max_connections=connections, max_keepalive_connections=connections)
    transport = None if urllib.request.getproxies() else AsyncioTransport(tls_context(), limits)
    return httpx.AsyncClient(timeout=timeout, headers=headers, limits=limits, verify=tls_context(),
                             transport=transport)


class ClientPool(Generic[C]):
    def __init__(self, make: Callable[[int], C], max_in_flight: int, per_client: int = CONNECTIONS_PER_CLIENT):
        """``make(connections)`` builds one client allowed that many connections."""
        n = max(1, min(MAX_CLIENTS, math.ceil(max_in_flight / per_client)))
        self.clients: list[C] = [make(math.ceil(max_in_flight / n)) for _ in range(n)]
        self._busy = [0] * n

    @contextlib.asynccontextmanager
    async def client(self) -> AsyncIterator[C]:
        i = min(range(len(self.clients)), key=self._busy.__getitem__)
        self._busy[i] += 1
        try:
            yield self.clients[i]
        finally:
            self._busy[i] -= 1

    @property
    def first(self) -> C:
        return self.clients[0]
