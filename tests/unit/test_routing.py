"""The router's decision, pure: where one more request would finish first."""

import pytest

from agents.config import Deadlines
from agents.generation.routing import Estimates, LoadFit, Option, choose, fleet_finish_s

O = Option


@pytest.mark.parametrize("options, chosen", [
    # fewest in flight when nothing is known yet (today's rule), ties to the first
    ([O(3, None), O(1, None), O(1, None)], 1),
    # a fast endpoint keeps the work while it would still finish first
    ([O(9, 0.9), O(0, 1.05)], 0),
    # ... and a slow one takes a request once the fast one is loaded enough
    ([O(12, 1.2), O(0, 1.05)], 1),
    # an endpoint with no estimate yet counts as the slowest known one, not as instant
    ([O(0, None), O(4, 0.5), O(0, 0.7)], 1),
    ([O(2, None), O(4, 0.9), O(0, 0.7)], 2),
    ([O(0, None), O(4, 0.5)], 0),  # tied with it: the fewest in flight
    # the ceiling: a full endpoint takes nothing, however fast
    ([O(8, 0.1, ceiling=8), O(0, 5.0)], 1),
    ([O(8, 0.1, ceiling=8), O(3, 5.0, ceiling=3)], None),
    # down (breaker cooling down, or preflight not passed): skipped; none ready: None
    ([O(0, 0.1, ready=False), O(5, 9.0)], 1),
    ([O(0, 0.1, ready=False)], None),
    # ties: away from where the request just failed, then to where its body was built
    ([O(1, 0.5, avoid=True), O(1, 0.5)], 1),
    ([O(1, 0.5), O(1, 0.5, prefer=True)], 1),
    ([O(1, 0.5, prefer=True), O(1, 0.5, avoid=True)], 0),
])
def test_a_request_goes_where_it_would_finish_first(options, chosen):
    assert choose(options) == chosen


def test_a_queueing_server_is_told_from_a_batching_one():
    queue, batch = LoadFit(), LoadFit()
    for k in [1, 2, 3, 4, 5, 6, 7, 8] * 5:
        queue.add(k, 0.5 * k)  # one slot: each request waits for those ahead
        batch.add(k, 1.0)  # batches: the same time at any load
    assert queue.at(10) == pytest.approx(5.0, rel=0.01)
    # the batching server's line is flat but for the least cost a request in flight is given
    assert batch.at(10) == pytest.approx(1.0 * (1 + 0.05 * 10), rel=0.01)


def test_one_load_seen_is_taken_as_a_queue_until_loads_differ():
    f = LoadFit()
    f.add(1, 2.0)  # a probe: (in flight + 1) x its time, no stampede onto a new endpoint
    assert f.at(1) == pytest.approx(2.0) and f.at(4) == pytest.approx(8.0)


def test_the_estimate_follows_a_server_that_slows_down():
    f = LoadFit()
    for k in [1, 2, 3, 4] * 10:
        f.add(k, 0.1)
    before = f.at(3)
    for k in [1, 2, 3, 4] * 10:
        f.add(k, 1.0)
    assert before == pytest.approx(0.1 * 1.15, rel=0.05) and f.at(3) > 0.8


def test_per_output_token_where_usage_is_reported():
    e = Estimates()
    e.observe("draft", 1, 4.0, 400)  # 10 ms a token
    e.observe("draft", 1, 1.0, 100)
    assert e.finish_s("draft", 0, 200) == pytest.approx(2.0)
    assert e.finish_s("edit", 0, 50) is None  # a kind not seen here
    e.observe("edit", 1, 0.3, None)  # no usage: per request
    assert e.finish_s("edit", 0, None) == pytest.approx(0.3)


def test_a_new_endpoint_starts_from_its_probe_scaled_by_what_the_fleet_has_seen():
    seen, new = Estimates(), Estimates()
    seen.observe("probe", 1, 0.1, None)
    seen.observe("draft", 1, 2.0, None)  # drafts take 20 probes' time here
    new.observe("probe", 1, 0.3, None)  # three times slower than the one seen
    fast, slow = fleet_finish_s([seen, new], [0, 0], "draft", None)
    assert fast == pytest.approx(2.0) and slow == pytest.approx(6.0)
    # and its in-flight requests count, as a queue's would, until it is measured
    _, loaded = fleet_finish_s([seen, new], [0, 2], "draft", None)
    assert loaded == pytest.approx(18.0)
    assert fleet_finish_s([Estimates()], [0], "draft", None) == [None]


def test_a_recovered_endpoint_restarts_from_its_first_answer():
    e = Estimates()
    for _ in range(20):
        e.observe("edit", 1, 0.1, None)
    e.restart("edit", 1, 2.0, None)
    assert e.finish_s("edit", 0, None) == pytest.approx(2.0)
    assert e.finish_s("probe", 0, None) == pytest.approx(2.0)


def test_a_generation_deadline_follows_the_tokens_asked_for_within_floor_and_timeout():
    est = Estimates()
    assert est.expected_s("edit", 1, 8000) is None  # nothing seen: --timeout alone
    assert Deadlines(floor_s=60).after_s(None, 600) == 600
    est.observe("edit", 1, 10.0, 500)  # 20 ms per token
    long = est.expected_s("edit", 1, 8000)
    assert long is not None and long >= 8000 * 0.02 * 0.99  # a whole --max-tokens at the seen rate
    d = Deadlines(floor_s=60, multiple=4)
    assert d.after_s(long, 10_000) >= 8000 * 0.02  # never shorter than the longest generation at that rate
    assert d.after_s(1.0, 600) == 60 and d.after_s(long, 600) == 600  # the floor, then --timeout
    assert est.expected_s("draft", 1, 100) == est.expected_s("edit", 1, 100)  # a kind not seen: the other's rate
