from agents.generation.breaker import CircuitBreaker


def test_opens_after_consecutive_failures_and_closes_on_success():
    b = CircuitBreaker(threshold=3, cooldown_s=2.0, max_cooldown_s=10.0)
    for t in (0.0, 0.1):
        b.record_failure(t)
    assert not b.is_open() and b.wait_s(0.2) == 0.0
    b.record_failure(0.2)
    assert b.is_open() and b.wait_s(0.2) == 2.0
    b.record_success()
    assert not b.is_open() and b.wait_s(0.3) == 0.0 and b.down_for_s(5.0) == 0.0


def test_cooldown_doubles_per_failed_probe_not_per_concurrent_failure():
    b = CircuitBreaker(threshold=2, cooldown_s=1.0, max_cooldown_s=5.0, max_down_s=20.0)
    b.record_failure(0.0)
    b.record_failure(0.0)  # opens: 1 s
    for _ in range(5):
        b.record_failure(0.5)  # requests sent before it opened: no longer cooldown
    assert b.wait_s(0.5) == 0.5
    b.record_failure(1.0)  # the probe after the cooldown fails: 2 s
    assert b.wait_s(1.0) == 2.0
    b.record_failure(3.0)
    b.record_failure(7.0)
    assert b.wait_s(7.0) == 5.0  # capped
    assert not b.gave_up(20.0) and b.gave_up(20.5)


def test_one_hung_request_opens_the_breaker_at_once():
    b = CircuitBreaker(threshold=5, cooldown_s=2.0)
    b.trip(100.0)
    assert b.is_open() and b.wait_s(100.0) == 2.0 and b.down_since == 100.0
    b.record_success()
    assert not b.is_open()
