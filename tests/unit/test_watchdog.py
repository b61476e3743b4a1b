"""The run's watchdog on a fake clock: what it says, when, and when it keeps quiet."""

from agents.watch.watchdog import MAX_PARTS_NAMED, MAX_REPEAT_S, Waiting, Watchdog, stalled_line, waiting_on

SCORER = "scorer http://127.0.0.1:9001"
ENDPOINT = "endpoint http://127.0.0.1:9002/v1"


def test_the_parts_waited_on_are_counted_and_the_longest_waiting_comes_first():
    now = 100.0
    sent = {SCORER: [25.0, 90.0, 99.0], ENDPOINT: [95.0], "scorer idle": []}
    assert waiting_on(sent, now) == [Waiting(SCORER, 3, 75.0), Waiting(ENDPOINT, 1, 5.0)]


def test_the_line_names_each_part_its_requests_and_the_oldest_ones_age():
    line = stalled_line(60.4, [Waiting(SCORER, 3, 75.2), Waiting(ENDPOINT, 1, 5.0)])
    assert line == (f"no progress for 60 s: waiting on {SCORER} (3 requests, oldest 75 s), "
                    f"{ENDPOINT} (1 request, oldest 5 s)")
    assert stalled_line(61, [], ["the store (down 61 s)"]) == "no progress for 61 s: waiting on the store (down 61 s)"
    assert stalled_line(61, []) == "no progress for 61 s: no request is out to an endpoint or a scorer"


def test_many_parts_stay_one_line():
    many = [Waiting(f"endpoint e{i}", 1, 100.0 - i) for i in range(MAX_PARTS_NAMED + 3)]
    line = stalled_line(60, many)
    assert "\n" not in line and "e0 " in line and f"e{MAX_PARTS_NAMED} " not in line and "3 more parts" in line


def test_it_speaks_once_nothing_moved_for_its_wait_and_not_before():
    dog = Watchdog(60.0)
    sent = {SCORER: [0.0, 1.0, 2.0]}
    assert dog.check(0.0, (0, 0), sent, busy=True) is None
    for t in range(1, 60):
        assert dog.check(float(t), (0, 0), sent, busy=True) is None
        assert dog.stalled_s(float(t)) is None
    assert dog.check(60.0, (0, 0), sent, busy=True) == f"no progress for 60 s: waiting on {SCORER} (3 requests, oldest 60 s)"
    assert dog.stalled_s(60.0) == 60.0


def test_progress_starts_its_clock_again():
    dog = Watchdog(60.0)
    sent = {ENDPOINT: [0.0]}
    dog.check(0.0, (0,), sent, busy=True)
    assert dog.check(59.0, (0,), sent, busy=True) is None
    assert dog.check(59.5, (1,), sent, busy=True) is None  # a step stored, a request answered: progress
    assert dog.check(100.0, (1,), sent, busy=True) is None and dog.stalled_s(100.0) is None
    assert dog.check(119.5, (1,), sent, busy=True) == f"no progress for 60 s: waiting on {ENDPOINT} (1 request, oldest 120 s)"


def test_a_long_stall_is_said_again_at_doubling_intervals_with_a_ceiling():
    dog = Watchdog(60.0)
    said = [t for t in range(0, 4000) if dog.check(float(t), "still", {SCORER: [0.0]}, busy=True)]
    assert said[:4] == [60, 120, 240, 480]
    gaps = [b - a for a, b in zip(said, said[1:])]
    assert max(gaps) == MAX_REPEAT_S and len(said) < 15


def test_a_worker_with_nothing_to_wait_on_is_idle_not_stalled():
    """A worker waiting for other workers' records: no request out, no record running."""
    dog = Watchdog(60.0)
    for t in range(0, 300):
        assert dog.check(float(t), (0,), {ENDPOINT: []}, busy=False) is None
    assert dog.stalled_s(300.0) is None
    # then it claims a record and its request hangs: the clock starts then, not at the start
    assert dog.check(300.0, (0,), {ENDPOINT: [300.0]}, busy=True) is None
    assert dog.check(359.0, (0,), {ENDPOINT: [300.0]}, busy=True) is None
    assert dog.check(360.0, (0,), {ENDPOINT: [300.0]}, busy=True) is not None


def test_records_running_with_no_request_out_are_still_waited_on():
    """Every endpoint cooling down: requests wait for one, none is out."""
    dog = Watchdog(10.0)
    dog.check(0.0, (0,), {}, busy=True)
    assert dog.check(10.0, (0,), {}, busy=True) == "no progress for 10 s: no request is out to an endpoint or a scorer"
