"""--tpm: tokens per minute over a sliding minute, on a fake clock; and where the dashboard shows it."""

import asyncio

from agents.generation.limits import TokenBudget
from agents.watch.dashboard import render, summary_line
from agents.watch.stats import Stats
from tests.unit.test_dashboard import _text


class Clock:
    def __init__(self):
        self.now, self.slept = 0.0, []

    def __call__(self) -> float:
        return self.now

    async def sleep(self, s: float) -> None:
        self.slept.append(s)
        self.now += s


def test_the_budget_waits_until_enough_of_the_last_minute_has_aged_out():
    clock = Clock()
    b = TokenBudget(1000, clock, clock.sleep)
    b.spend(600)
    clock.now = 20
    b.spend(300)
    assert b.used() == 900 and b.wait_s() == 0  # under the limit: go
    b.spend(200)  # 1100 in the last minute
    assert b.wait_s() == 40  # the first 600 age out at 60 s
    asyncio.run(b.__aenter__())
    assert clock.slept == [40] and clock.now == 60 and b.used() == 500
    clock.now = 200
    assert b.used() == 0 and b.wait_s() == 0


def test_one_request_over_the_whole_budget_waits_for_itself_to_age_out():
    clock = Clock()
    b = TokenBudget(100, clock, clock.sleep)
    b.spend(500)
    assert b.wait_s() == 60
    b.spend(0)  # a response without usage costs nothing known
    assert b.used() == 500


def test_the_limits_are_shown_beside_the_rate():
    st = Stats(total=1, rps_limit=2.0, tpm_limit=90000, tokens_last_minute=4500)
    assert "(limits: --rps 2, --tpm 90000 (4500 in the last minute))" in summary_line(st)
    assert "--tpm 90000 (4500 in the last minute)" in _text(render(st, "t"))
    assert "limits" not in summary_line(Stats(total=1))
