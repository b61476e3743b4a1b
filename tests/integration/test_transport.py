"""The asyncio transport (``agents/transport.py``) over real loopback sockets: everything httpx
does over it must behave as over httpx's own transport, failures included."""

import asyncio
import hashlib
import ssl
import subprocess
import threading

import httpx
import pytest

from agents.pool import http_client
from agents.transport import READ_HIGH_WATER, AsyncioTransport
from tests.support.loopback import JSONHandler, LoopbackServer

LIMITS = httpx.Limits(max_connections=4, max_keepalive_connections=4)


class Handler(JSONHandler):
    timeout = 0.3  # an idle keep-alive connection is closed by the server after this

    def setup(self) -> None:
        super().setup()
        with self.server.lock:
            self.server.connections += 1

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self._send(200, {"size": len(body), "sha": hashlib.sha256(body).hexdigest()})

    def do_PUT(self) -> None:  # reads the body only after a second
        threading.Event().wait(1.0)
        self.do_POST()

    def do_GET(self) -> None:
        path, _, arg = self.path.partition("?")
        if path == "/big":
            self._send(200, b"x" * int(arg))
        elif path == "/slow":
            threading.Event().wait(float(arg))
            self._send(200, {"slow": True})
        elif path == "/cut":  # promises 100 bytes, sends 10 and hangs up
            self.send_response(200)
            self.send_header("Content-Length", "100")
            self.end_headers()
            self.wfile.write(b"0123456789")
            self.wfile.flush()
            self.close_connection = True
        else:
            self._send(200, {"ok": True})


class Server(LoopbackServer):
    def __init__(self, ssl_context: ssl.SSLContext | None = None):
        self.url = self._listen(0, Handler)
        self._httpd.connections, self._httpd.lock = 0, threading.Lock()
        if ssl_context is not None:
            self._httpd.socket = ssl_context.wrap_socket(self._httpd.socket, server_side=True)
            self.url = self.url.replace("http://", "https://")

    @property
    def connections(self) -> int:
        return self._httpd.connections


def client(ssl_context: ssl.SSLContext | None = None, timeout: float = 5.0) -> httpx.AsyncClient:
    transport = AsyncioTransport(ssl_context or ssl.create_default_context(), LIMITS)
    return httpx.AsyncClient(transport=transport, timeout=timeout)


async def test_bodies_bigger_than_every_buffer_go_both_ways_intact():
    up = bytes(range(256)) * (12 * 1024)  # 3 MB: the write waits for the socket to drain
    down = 3 * READ_HIGH_WATER  # the socket stops being read, then resumes
    with Server() as srv:
        async with client() as http:
            r = await http.post(f"{srv.url}/echo", content=up)
            assert r.json() == {"size": len(up), "sha": hashlib.sha256(up).hexdigest()}
            r = await http.get(f"{srv.url}/big?{down}")
            assert r.content == b"x" * down


async def test_a_slow_reader_stops_the_socket_and_gets_every_byte():
    down = 4 * READ_HIGH_WATER
    with Server() as srv:
        async with client() as http:
            async with http.stream("GET", f"{srv.url}/big?{down}") as r:
                await asyncio.sleep(0.3)  # meanwhile the server sends more than the buffer holds
                got = b"".join([chunk async for chunk in r.aiter_raw()])
            assert got == b"x" * down


async def test_a_write_the_server_does_not_take_times_out():
    with Server() as srv:
        async with httpx.AsyncClient(transport=AsyncioTransport(ssl.create_default_context(), LIMITS),
                                     timeout=httpx.Timeout(5.0, write=0.2)) as http:
            with pytest.raises(httpx.WriteTimeout):
                await http.put(f"{srv.url}/stall", content=b"z" * (32 << 20))


async def test_concurrent_requests_reuse_the_pooled_connections():
    with Server() as srv:
        async with client() as http:
            for _ in range(3):
                rs = await asyncio.gather(*(http.post(f"{srv.url}/echo", content=b"%d" % i) for i in range(16)))
                assert [r.json()["size"] for r in rs] == [len(b"%d" % i) for i in range(16)]
            assert srv.connections <= LIMITS.max_connections


async def test_a_connection_the_server_closed_while_idle_is_replaced_not_failed():
    with Server() as srv:
        async with client() as http:
            assert (await http.get(f"{srv.url}/a")).json() == {"ok": True}
            await asyncio.sleep(0.6)  # the server has closed the idle keep-alive connection
            assert (await http.get(f"{srv.url}/b")).json() == {"ok": True}
            assert srv.connections == 2


async def test_a_slow_answer_times_out_and_the_client_recovers():
    with Server() as srv:
        async with client(timeout=0.2) as http:
            with pytest.raises(httpx.ReadTimeout):
                await http.get(f"{srv.url}/slow?1.0")
            assert (await http.get(f"{srv.url}/a")).json() == {"ok": True}


async def test_a_cancelled_request_leaves_the_client_usable():
    with Server() as srv:
        async with client() as http:
            task = asyncio.create_task(http.get(f"{srv.url}/slow?0.5"))
            await asyncio.sleep(0.1)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            assert (await http.get(f"{srv.url}/a")).json() == {"ok": True}


async def test_a_body_cut_short_and_a_refused_connection_raise_httpx_errors():
    with Server() as srv:
        async with client() as http:
            with pytest.raises(httpx.RemoteProtocolError):
                await http.get(f"{srv.url}/cut")
            port = srv.url.rsplit(":", 1)[1]
    async with client() as http:
        with pytest.raises(httpx.ConnectError):
            await http.get(f"http://127.0.0.1:{port}/gone")


async def test_https_with_certificate_checks(tmp_path):
    key, cert = tmp_path / "key.pem", tmp_path / "cert.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=localhost",
                    "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(key), "-out", str(cert)],
                   check=True, capture_output=True)
    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_ctx.load_cert_chain(cert, key)
    with Server(server_ctx) as srv:
        async with client(ssl.create_default_context(cafile=str(cert))) as http:
            r = await http.post(f"{srv.url}/echo", content=b"y" * 200_000)
            assert r.json()["size"] == 200_000
        async with client() as http:  # the system's CAs do not know this certificate
            with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
                await http.get(f"{srv.url}/a")


async def test_a_proxy_in_the_environment_keeps_httpx_own_transport(monkeypatch):
    for var in ("http_proxy", "https_proxy", "all_proxy", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)
    plain = http_client(2, httpx.Timeout(5.0))
    assert isinstance(plain._transport, AsyncioTransport)
    monkeypatch.setenv("HTTPS_PROXY", "http://127.0.0.1:3128")
    proxied = http_client(2, httpx.Timeout(5.0))
    assert not isinstance(proxied._transport, AsyncioTransport) and proxied._mounts
    await plain.aclose()
    await proxied.aclose()
