"""The scorer as a real process over HTTP: concurrent requests batched, same numbers as alone."""

import asyncio
import os
import subprocess
import sys

import httpx

import pytest

from agents.process import ChildService
from scorer import ScorerClient, ScoringInputError
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
