"""The HTTP client both the generator and the scorer client use."""

import httpx

from scorer.client import http_client
from tests.support.fake_scorer import FakeScorer


async def test_it_runs_on_aiohttp_and_keeps_httpx_own_transport_under_a_proxy(monkeypatch):
    for var in ("http_proxy", "https_proxy", "all_proxy", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)
    plain = http_client(2, httpx.Timeout(5.0))
    assert type(plain._transport).__name__ == "AiohttpTransport"
    with FakeScorer() as scorer:
        r = await plain.post(f"{scorer.url}/check", json={"items": [{"question": "q", "answer": "a b", "lang": "en"}]})
        assert r.status_code == 200 and r.json()["tokens"] == [2]
    await plain.aclose()
    monkeypatch.setenv("HTTPS_PROXY", "http://127.0.0.1:9")  # httpx honours it (and NO_PROXY) with its own
    proxied = http_client(2, httpx.Timeout(5.0))
    assert type(proxied._transport).__name__ == "AsyncHTTPTransport"
    await proxied.aclose()


async def test_a_refused_connection_is_an_httpx_error():
    client = http_client(2, httpx.Timeout(0.5))
    try:
        await client.get("http://127.0.0.1:9/")
        raise AssertionError("no error")
    except httpx.HTTPError as exc:
        assert isinstance(exc, (httpx.ConnectError, httpx.ConnectTimeout))
    await client.aclose()
