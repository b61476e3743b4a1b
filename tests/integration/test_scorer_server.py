"""The scorer as a real process over HTTP: concurrent requests batched, same numbers as alone."""

import asyncio
import sys

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
    finally:
        await client.aclose()
        await svc.stop()
    assert not svc.alive()
