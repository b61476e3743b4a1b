"""httpx's HTTP/1.1 transport running on asyncio directly, instead of through anyio.

httpcore reaches the network through anyio, which opens a cancel scope for every read and
write and looks up the current task several times per request: at the agents' request rates
that is a sixth of the process's CPU. This backend gives httpcore the same interface
(``AsyncNetworkBackend``) on a plain ``asyncio.Protocol``, with a timer per wait for timeouts.
httpcore keeps doing all of HTTP (parsing, pooling, keep-alive), and httpx all of the client
side, errors included: a failure here raises httpcore's own exceptions, which httpx maps to its
``ConnectError``/``ReadTimeout``/... exactly as on the anyio path.
"""

from __future__ import annotations

import asyncio
import select
import ssl
from typing import Any, Iterable

import httpcore
import httpx

SocketOption = tuple[int, int, int | bytes] | tuple[int, int, None, int]
WRITE_HIGH_WATER = 64 * 1024  # bytes written but not yet sent before write() waits
READ_HIGH_WATER = 1024 * 1024  # bytes received but not yet read before the socket stops being read


class _Protocol(asyncio.Protocol):
    """Bytes received, waiting to be read; and whether the peer is gone."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.eof = False
        self.error: BaseException | None = None
        self.waiter: asyncio.Future[None] | None = None  # a read waiting for data
        self.drained: asyncio.Future[None] | None = None  # a write waiting for the send buffer

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        if len(self.buffer) > READ_HIGH_WATER and self.transport is not None:
            self.transport.pause_reading()  # read() resumes it
        _wake(self.waiter)

    def eof_received(self) -> bool:
        self.eof = True
        _wake(self.waiter)
        return False  # close the transport

    def connection_lost(self, exc: Exception | None) -> None:
        self.eof = True
        self.error = exc
        _wake(self.waiter)
        _wake(self.drained)

    def pause_writing(self) -> None:
        if self.drained is None or self.drained.done():
            self.drained = asyncio.get_running_loop().create_future()

    def resume_writing(self) -> None:
        _wake(self.drained)


def _wake(fut: asyncio.Future[None] | None) -> None:
    if fut is not None and not fut.done():
        fut.set_result(None)


def _expire(fut: asyncio.Future[None]) -> None:
    if not fut.done():
        fut.set_exception(TimeoutError())


async def _wait(fut: asyncio.Future[None], timeout: float | None) -> None:
    """Await ``fut``, raising ``TimeoutError`` after ``timeout`` seconds (None: no limit)."""
    if timeout is None:
        await fut
        return
    timer = asyncio.get_running_loop().call_later(timeout, _expire, fut)
    try:
        await fut
    finally:
        timer.cancel()


class AsyncioStream(httpcore.AsyncNetworkStream):
    def __init__(self, transport: asyncio.Transport, protocol: _Protocol) -> None:
        self._transport, self._protocol = transport, protocol

    async def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        p = self._protocol
        while not p.buffer:
            if p.eof:
                if p.error is not None:
                    raise httpcore.ReadError(str(p.error) or repr(p.error))
                return b""
            p.waiter = asyncio.get_running_loop().create_future()
            try:
                await _wait(p.waiter, timeout)
            except TimeoutError as exc:
                raise httpcore.ReadTimeout("timed out reading from the server") from exc
            finally:
                p.waiter = None
        if len(p.buffer) <= max_bytes:
            data = bytes(p.buffer)
            p.buffer.clear()
        else:
            data = bytes(p.buffer[:max_bytes])
            del p.buffer[:max_bytes]
        if len(p.buffer) <= READ_HIGH_WATER and not self._transport.is_reading() and not p.eof:
            self._transport.resume_reading()
        return data

    async def write(self, buffer: bytes, timeout: float | None = None) -> None:
        if not buffer:
            return
        p = self._protocol
        if p.eof or self._transport.is_closing():
            raise httpcore.WriteError(f"the connection is closed{f': {p.error}' if p.error else ''}")
        self._transport.write(buffer)
        if p.drained is not None and not p.drained.done():
            try:
                await _wait(p.drained, timeout)
            except TimeoutError as exc:
                raise httpcore.WriteTimeout("timed out writing to the server") from exc
            if p.error is not None:
                raise httpcore.WriteError(str(p.error))

    async def aclose(self) -> None:
        self._transport.close()

    async def start_tls(self, ssl_context: ssl.SSLContext, server_hostname: str | None = None,
                        timeout: float | None = None) -> httpcore.AsyncNetworkStream:
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(timeout):
                transport = await loop.start_tls(self._transport, self._protocol, ssl_context,
                                                 server_hostname=server_hostname)
        except TimeoutError as exc:
            self._transport.close()
            raise httpcore.ConnectTimeout("timed out in the TLS handshake") from exc
        except (OSError, ssl.SSLError, ConnectionError) as exc:
            self._transport.close()
            raise httpcore.ConnectError(str(exc)) from exc
        if transport is None:  # the peer closed the connection during the handshake
            raise httpcore.ConnectError("the server closed the connection during the TLS handshake")
        self._protocol.transport = transport  # type: ignore[assignment]
        return AsyncioStream(transport, self._protocol)  # type: ignore[arg-type]

    def get_extra_info(self, info: str) -> Any:
        t = self._transport
        if info == "ssl_object":
            return t.get_extra_info("ssl_object")
        if info == "client_addr":
            return t.get_extra_info("sockname")
        if info == "server_addr":
            return t.get_extra_info("peername")
        if info == "socket":
            return t.get_extra_info("socket")
        if info == "is_readable":  # an idle pooled connection with something to read is stale
            p = self._protocol
            return bool(p.buffer) or p.eof or t.is_closing() or _readable(t.get_extra_info("socket"))
        return None


def _readable(sock: Any) -> bool:
    fd = -1 if sock is None else sock.fileno()
    if fd < 0:
        return True
    poll = select.poll()
    poll.register(fd, select.POLLIN)
    return bool(poll.poll(0))


class AsyncioBackend(httpcore.AsyncNetworkBackend):
    async def connect_tcp(self, host: str, port: int, timeout: float | None = None, local_address: str | None = None,
                          socket_options: Iterable[SocketOption] | None = None) -> httpcore.AsyncNetworkStream:
        loop = asyncio.get_running_loop()
        local = (local_address, 0) if local_address else None
        return await self._connect(lambda: loop.create_connection(_Protocol, host, port, local_addr=local),
                                   timeout, socket_options)

    async def connect_unix_socket(self, path: str, timeout: float | None = None,
                                  socket_options: Iterable[SocketOption] | None = None) -> httpcore.AsyncNetworkStream:
        loop = asyncio.get_running_loop()
        return await self._connect(lambda: loop.create_unix_connection(_Protocol, path), timeout, socket_options)

    async def _connect(self, open_, timeout: float | None, socket_options) -> AsyncioStream:
        try:
            async with asyncio.timeout(timeout):
                transport, protocol = await open_()
        except TimeoutError as exc:
            raise httpcore.ConnectTimeout("timed out connecting to the server") from exc
        except OSError as exc:
            raise httpcore.ConnectError(str(exc)) from exc
        for option in socket_options or ():  # asyncio has set TCP_NODELAY already
            transport.get_extra_info("socket").setsockopt(*option)
        transport.set_write_buffer_limits(high=WRITE_HIGH_WATER)
        return AsyncioStream(transport, protocol)

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)


class AsyncioTransport(httpx.AsyncHTTPTransport):
    """``httpx.AsyncHTTPTransport`` (HTTP/1.1, no proxy) with httpcore on ``AsyncioBackend``."""

    def __init__(self, ssl_context: ssl.SSLContext, limits: httpx.Limits) -> None:
        super().__init__(verify=ssl_context, limits=limits)
        # httpx builds its pool on anyio (it opens no connection yet): the same pool, on asyncio.
        self._pool = httpcore.AsyncConnectionPool(
            ssl_context=ssl_context, max_connections=limits.max_connections,
            max_keepalive_connections=limits.max_keepalive_connections, keepalive_expiry=limits.keepalive_expiry,
            network_backend=AsyncioBackend())
