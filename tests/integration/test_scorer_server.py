"""The scorer as a real process over HTTP: concurrent requests batched, same numbers as alone."""

import asyncio
import concurrent.futures
import os
import signal
import socket
import subprocess
import sys
import time

import httpx
import pytest

from agents.services.process import ChildService
from agents.services.scorers import identity_problems
from scorer import ScorerClient, ScoringInputError
from scorer.settings import ScorerSettings
from tests.support.hostile import hostile, rss_mb, valid_large
from tests.support.runner import ROOT

THINK = "Alright, the user wants a short poem about the sea.\n\nHmm, maybe I should open with the dawn light."
ANSWER = ("The sea at dawn is a held breath,\nsilver on silver, waiting.\n\nThen the gulls come, and the boats, "
          "and the long day opens like a door.")


async def test_concurrent_requests_equal_sequential_ones(tiny_model_dirs, tmp_path):
    svc = ChildService("scorer", "scorer.server", ["--model", str(tiny_model_dirs["gemma3"]), "--threads", "1"],
                       tmp_path / "scorer.log")
    url = await svc.start(timeout_s=120)
    client = ScorerClient(url)
    try:
        items = [(f"q{i}", THINK * (1 + i % 3), ANSWER) for i in range(6)]
        alone = [await client.score(q, t, a, "en") for q, t, a in items]
        together = await asyncio.gather(*(client.score(q, t, a, "en") for q, t, a in items))
        assert together == pytest.approx(alone, abs=1e-5)
        assert len(set(round(x, 6) for x in alone)) > 1
        with pytest.raises(ScoringInputError):
            await client.score("q", THINK * 400, ANSWER, "en")  # over the tiny model's 4096-token context
        # a step's candidates in one request: the one too long gets its error, the others their scores
        many = await client.score_many("q0", [THINK, THINK * 400, THINK * 2], ANSWER, "en")
        assert many[0] == pytest.approx(alone[0], abs=1e-5) and isinstance(many[1], ScoringInputError)
        assert many[2] == pytest.approx(await client.score("q0", THINK * 2, ANSWER, "en"), abs=1e-5)
        # every candidate too long (the server answers 422): each still gets its own error
        [only] = await client.score_many("q0", [THINK * 400], ANSWER, "en")
        assert isinstance(only, ScoringInputError)
        checked = await client.check_many([("q", ANSWER, "en"), ("q", ANSWER * 300, "en")])
        assert isinstance(checked[0], int) and checked[0] > 10 and isinstance(checked[1], ScoringInputError)
        health = httpx.get(url.removesuffix("/v1") + "/health").json()
        assert health["engine"]["requests"] >= 9 and "prefix_cache" in health["engine"]
        # what a run checks a --scorer-url against: this one scores as a run with these settings would
        said = await client.health()
        assert identity_problems(said, ScorerSettings(model=str(tiny_model_dirs["gemma3"]))) == []
        assert said.model_extra["dtype"] == "float32" and said.model_extra["scoring_prompt_id"]
        assert identity_problems(said, ScorerSettings(model=str(tiny_model_dirs["gemma3"]), scoring_prompt="short"))
    finally:
        await client.aclose()
        await svc.stop()
    assert not svc.alive()


def test_exposed_scorer_requires_a_token(tiny_model_dirs):
    cmd = [sys.executable, "-m", "scorer.server", "--model", str(tiny_model_dirs["llama"]), "--threads", "1"]
    env = {**os.environ, "REER_SCORER_TOKEN": ""}
    refused = subprocess.run(cmd + ["--host", "0.0.0.0"], cwd=ROOT, capture_output=True, text=True, timeout=60, env=env)
    assert refused.returncode == 2 and "--token" in refused.stderr


async def test_token_protected_scorer_answers_only_with_the_token(tiny_model_dirs):
    from scorer import ScorerError

    cmd = [sys.executable, "-m", "scorer.server", "--model", str(tiny_model_dirs["llama"]), "--threads", "1",
           "--host", "0.0.0.0", "--token", "t0ken"]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        url = proc.stdout.readline().strip().removeprefix("REER_URL=")
        async with httpx.AsyncClient() as http:
            while (await http.get(f"{url}/health", headers={"Authorization": "Bearer t0ken"})).status_code != 200:
                await asyncio.sleep(0.2)
            assert (await http.get(f"{url}/health")).status_code == 401
        with pytest.raises(ScorerError, match="token"):
            await ScorerClient(url).score("q", THINK, ANSWER, "en")
        assert 0 < await ScorerClient(url, token="t0ken").score("q", THINK, ANSWER, "en") <= 2
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def start_scorer(model_dir, *extra: str) -> tuple[subprocess.Popen, str]:
    cmd = [sys.executable, "-m", "scorer.server", "--model", str(model_dir), "--threads", "1", *extra]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    url = proc.stdout.readline().strip().removeprefix("REER_URL=")
    deadline = time.monotonic() + 120
    while httpx.get(f"{url}/health").status_code != 200:
        assert time.monotonic() < deadline and proc.poll() is None, proc.stderr.read()
        time.sleep(0.2)
    return proc, url


def raw_request(url: str, head: bytes, body: bytes = b"", wait_s: float = 5.0) -> bytes:
    """Send bytes as they are (a lying Content-Length, a body that never comes) and read the answer."""
    host, port = url.removeprefix("http://").rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=wait_s) as s:
        s.sendall(head + body)
        return s.recv(65536)


def item(i: int, thinking: str = THINK) -> dict:
    return {"question": f"q{i}", "thinking": thinking, "answer": ANSWER, "lang": "en"}


async def test_the_scorer_refuses_what_is_over_its_limits_and_keeps_scoring(tiny_model_dirs):
    proc, url = start_scorer(tiny_model_dirs["llama"], "--max-body-mb", "0.01", "--max-items", "3", "--max-large-requests", "1",
                             "--read-timeout-s", "1")
    try:
        health = httpx.get(f"{url}/health").json()
        assert health["limits"] == {"max_body_bytes": 10485, "max_items": 3, "read_timeout_s": 1.0,
                                    "max_large_requests": 1}
        big = httpx.post(f"{url}/score", json={"items": [item(0, THINK * 120)]})
        assert big.status_code == 413 and "over the scorer's limit of 10485" in big.json()["error"]
        many = httpx.post(f"{url}/score", json={"items": [item(i) for i in range(4)]})
        assert many.status_code == 413 and "4 items" in many.json()["error"]
        assert httpx.post(f"{url}/score", content=b"{not json").status_code == 400
        wrong = httpx.post(f"{url}/score", json={"items": [{"question": "q"}]})
        assert wrong.status_code == 400 and "thinking" in wrong.json()["error"]
        slow = raw_request(url, b"POST /score HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n", b"{")
        assert slow.startswith(b"HTTP/1.1 408"), slow[:80]
        lying = raw_request(url, b"POST /score HTTP/1.1\r\nHost: x\r\nContent-Length: -5\r\n\r\n")
        assert lying.startswith(b"HTTP/1.1 400"), lying[:80]
        # meanwhile, and after: real requests are scored; the client splits what is over the item limit
        client = ScorerClient(url)
        checked = await client.check_many([(f"q{i}", ANSWER, "en") for i in range(7)])
        assert all(isinstance(c, int) and c > 10 for c in checked)
        [too_big] = await client.score_many("q", [THINK * 120], ANSWER, "en")
        assert isinstance(too_big, ScoringInputError) and "request limits" in str(too_big)
        assert 0 < await client.score("q", THINK, ANSWER, "en") <= 2
        await client.aclose()
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_sigterm_lets_the_requests_in_flight_finish(tiny_model_dirs):
    proc, url = start_scorer(tiny_model_dirs["llama"])
    try:
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            busy = pool.submit(httpx.post, f"{url}/score", json={"items": [item(i, THINK * 30) for i in range(24)]},
                               timeout=120)
            time.sleep(0.3)  # the request is in the model's queue now
            assert not busy.done()  # still being scored when the signal comes
            proc.send_signal(signal.SIGTERM)
            answered = busy.result()
        assert answered.status_code == 200 and len(answered.json()["scores"]) == 24
        # uvicorn re-raises the SIGTERM once it has shut down gracefully: the parent sees that signal
        assert proc.wait(timeout=60) in (0, -signal.SIGTERM)
    finally:
        if proc.poll() is None:
            proc.kill()


async def test_a_flood_of_hostile_requests_leaves_memory_bounded_and_real_scores_unchanged(tiny_model_dirs):
    mb = 8
    proc, url = start_scorer(tiny_model_dirs["llama"], "--max-body-mb", str(mb), "--read-timeout-s", "5",
                             "--max-large-requests", "2")
    try:
        client = ScorerClient(url)
        items = [(f"question {i}", THINK * (1 + i % 3), ANSWER) for i in range(6)]
        alone = [await client.score(q, t, a, "en") for q, t, a in items]
        await client.score_many("q", [THINK] * 4, ANSWER, "en")
        base, _ = rss_mb(proc.pid)

        kinds = ["declared"] * 8 + ["streamed"] * 6 + ["slow"] * 4 + ["malformed"] * 6 + ["many"] * 12
        with concurrent.futures.ThreadPoolExecutor(len(kinds) + 8) as pool:
            flood = [pool.submit(hostile, url, k, mb) for k in kinds]
            flood += [pool.submit(valid_large, url, mb - 1) for _ in range(8)]
            during, health_s = [], []
            while not all(f.done() for f in flood):  # real scoring goes on, and /health answers at once
                during.append(await asyncio.gather(*(client.score(q, t, a, "en") for q, t, a in items)))
                t0 = time.monotonic()
                assert httpx.get(f"{url}/health", timeout=10).status_code == 200
                health_s.append(time.monotonic() - t0)
            statuses = [f.result() for f in flood]
        _, peak = rss_mb(proc.pid)
        after = await asyncio.gather(*(client.score(q, t, a, "en") for q, t, a in items))
        large_after = valid_large(url, mb - 1)
        await client.aclose()
        time.sleep(1.0)
        now, _ = rss_mb(proc.pid)
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    by_kind = dict(zip(kinds + ["valid"] * 8, statuses))
    assert [s for k, s in zip(kinds, statuses) if k == "declared"] == [413] * 8, statuses
    # each refused for what it is, or, waiting for a large-request slot, timed out or told to retry
    assert set(s for k, s in zip(kinds, statuses) if k == "streamed") <= {413, 408, 503, 0}, statuses
    assert set(s for k, s in zip(kinds, statuses) if k == "slow") <= {408, 503}, statuses
    assert set(s for k, s in zip(kinds, statuses) if k == "malformed") <= {400, 408, 503}, statuses
    assert set(s for k, s in zip(kinds, statuses) if k == "many") <= {413, 408, 503}, statuses
    # a large valid request may be told to retry while the flood holds the slots; once it is over, it is served
    assert set(statuses[len(kinds):]) <= {200, 408, 503} and large_after == 200, by_kind
    assert during and max(health_s) < 2.0, health_s
    for scores in [*during, after]:
        assert scores == pytest.approx(alone, abs=1e-5)
    # at most two large bodies are held at once, and what they took is handed back
    assert peak - base < 400, (base, peak, now)
    assert now - base < 50, (base, peak, now)


def test_a_large_body_waits_for_a_slot_and_a_small_one_does_not(tiny_model_dirs):
    proc, url = start_scorer(tiny_model_dirs["llama"], "--max-body-mb", "8", "--read-timeout-s", "3",
                             "--max-large-requests", "1")
    try:
        with concurrent.futures.ThreadPoolExecutor(2) as pool:
            t0 = time.monotonic()
            holder = pool.submit(lambda: (hostile(url, "slow", 4), time.monotonic() - t0))
            time.sleep(0.5)  # it has sent its first 1.5 MiB: the one slot is taken
            large = pool.submit(lambda: (valid_large(url, 2), time.monotonic() - t0))
            small = httpx.post(f"{url}/score", json={"items": [item(0)]}, timeout=30)
            small_s = time.monotonic() - t0
            (held, held_s), (waited, waited_s) = holder.result(), large.result()
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    assert small.status_code == 200 and small_s < held_s  # not behind the large bodies
    assert held == 408 and waited == 200
    assert waited_s > held_s  # the second large body was read only once the first let go
