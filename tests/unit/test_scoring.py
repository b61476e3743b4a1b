"""The supervised scorer's restart decisions, with stand-ins for the process and the client."""

import pytest

from agents.services import supervised as scoring
from agents.services.supervised import SupervisedScorer
from scorer import ScorerUnavailable


class DeadService:
    """A scorer process that dies after every start."""

    def __init__(self, alive: bool = False):
        self.starts, self.alive_flag = 0, alive

    async def start(self):
        self.starts += 1
        return f"http://127.0.0.1:{self.starts}"

    async def stop(self):
        pass

    async def wait_exit(self, timeout_s):
        return not self.alive_flag

    def tail(self):
        return ""


class FailingClient:
    def __init__(self, url, answers=()):
        self.url, self.answers = url, list(answers)

    async def score(self, *args):
        if self.answers:
            return self.answers.pop(0)
        raise ScorerUnavailable("connection refused")

    async def aclose(self):
        pass


@pytest.fixture(autouse=True)
def fake_client(monkeypatch):
    monkeypatch.setattr(scoring, "ScorerClient", FailingClient)


async def test_a_dead_scorer_is_restarted_then_given_up_on():
    logs = []
    s = SupervisedScorer(DeadService(), logs.append, max_restarts=2)
    await s.start()
    with pytest.raises(ScorerUnavailable, match="died 3 times"):
        await s.score("q", "t", "a", "en")
    assert s.service.starts == 3 and len(logs) == 2 and "restarting it (2/2)" in logs[-1]


async def test_a_restart_that_works_retries_the_request():
    s = SupervisedScorer(DeadService(), lambda m: None)
    await s.start()
    real = scoring.ScorerClient
    scoring.ScorerClient = lambda url: FailingClient(url, answers=[0.5])
    try:
        assert await s.score("q", "t", "a", "en") == 0.5
    finally:
        scoring.ScorerClient = real
    assert s.restarts == 1


async def test_a_live_scorer_that_drops_connections_is_retried_not_restarted(monkeypatch):
    monkeypatch.setattr(scoring, "TRANSIENT_WAIT_S", 0.0)
    s = SupervisedScorer(DeadService(alive=True), lambda m: None)
    await s.start()
    with pytest.raises(ScorerUnavailable, match="connection refused"):
        await s.score("q", "t", "a", "en")
    assert s.restarts == 0 and s.service.starts == 1
