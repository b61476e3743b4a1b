import io

from rich.console import Console

from agents.config import Prices
from agents.watch.dashboard import Display, render, summary_line
from agents.watch.stats import Stats


def _text(renderable) -> str:
    out = io.StringIO()
    Console(file=out, width=200).print(renderable)
    return out.getvalue()


def stats() -> Stats:
    s = Stats(total=10, done=3, failed=1, skipped=1, running=2, steps=12, accepted=5, requests=40)
    for record_id, initial, final in [(1, 1.5, 1.2), (2, 1.0, 0.8)]:
        s.draft_scored(record_id, initial)
        s.record_ended(record_id, final)
    s.error("HTTP 503 from the endpoint")
    return s


def test_summary_line_says_what_a_user_needs():
    line = summary_line(stats())
    for part in ("records 5/10", "done 3", "failed 1", "skipped 1", "running 2", "accepted 5", "1.250 -> 1.000",
                 "errors 1"):
        assert part in line


def test_the_score_change_is_over_the_same_records():
    """A record in flight (draft scored, no final yet) and a resumed one (final only, its draft
    scored by an earlier process) would each pull one mean alone: the demo once showed
    1.620 -> 1.675 while every accepted step lowered a score."""
    s = stats()
    s.draft_scored(3, 1.9)  # in flight
    s.record_ended(4, 1.7)  # resumed: its draft was scored before
    s.draft_scored(5, 1.1)
    s.record_ended(5)  # failed after its draft
    assert "1.250 -> 1.000" in summary_line(s)
    assert list(s.drafts_in_flight) == [3]  # what ended leaves only the sums
    assert "score - -> -" in summary_line(Stats(total=1))


def test_panel_shows_counts_scores_and_last_errors():
    out = io.StringIO()
    Console(file=out, width=140).print(render(stats(), "in.jsonl"))
    text = out.getvalue()
    assert "reer · in.jsonl" in text and "1.250 → 1.000" in text and "HTTP 503" in text


def test_plain_mode_logs_lines_when_not_a_terminal():
    out = io.StringIO()
    with Display(stats(), "x", stream=out) as d:  # a StringIO is not a tty: plain lines
        d.log("hello")
        d.tick()
    assert out.getvalue().splitlines()[0] == "hello" and "records 5/10" in out.getvalue()


def test_with_prices_the_cost_so_far_is_shown():
    s = stats()
    s.prompt_tokens, s.completion_tokens = 2_000_000, 500_000
    assert "$" not in summary_line(s)
    s.prices = Prices(prompt=0.5, completion=2.0)
    assert ", $2.00 |" in summary_line(s)
    assert "$2.00" in _text(render(s, "t"))
    assert "errors 1 (last: HTTP 503 from the endpoint)" in summary_line(s)


def test_several_endpoints_each_get_a_line_with_their_state():
    from agents.watch.stats import EndpointCounts

    s = stats()
    s.endpoints = [EndpointCounts("http://gen1:8000/v1", requests=30, completion_tokens=900, in_flight=5,
                                  ceiling=8, estimate_s={"draft": 2.04, "edit": 0.31}),
                   EndpointCounts("http://gen2:8000/v1", requests=10, errors=7, state="down")]
    panel, line = _text(render(s, "in.jsonl")), summary_line(s)
    assert "http://gen1:8000/v1" in panel and "down  0 in flight" in panel
    assert "up  5/8 in flight, draft 2.0s edit 0.3s, 30 req (75%), 0 errors" in panel
    assert "http://gen2:8000/v1 down: 0 in flight, est -, 10 req (25%), 7 errors" in line
    s.endpoints = s.endpoints[:1]  # one endpoint: the generator line says it all
    assert "http://gen1" not in _text(render(s, "in.jsonl")) and "http://gen1" not in summary_line(s)


def test_a_hung_scorer_and_a_stalled_run_are_shown():
    s = stats()
    s.scorers = {"http://sc1:8001": "up", "http://sc2:8001": "hung, 3 moved"}
    panel, line = _text(render(s, "in.jsonl")), summary_line(s)
    assert "scorer http://sc2:8001  hung, 3 moved" in panel and "scorer http://sc1:8001  up" in panel
    assert line.endswith(" | scorer http://sc2:8001 hung, 3 moved") and "sc1" not in line
    assert "SCORERS DOWN" not in line and "NO PROGRESS" not in line
    s.scorers["http://sc1:8001"] = "down"
    s.stalled_s = 75.4
    assert "· SCORERS DOWN, waiting · NO PROGRESS for 75 s]" in summary_line(s)
    assert "NO PROGRESS for 75 s" in _text(render(s, "in.jsonl"))
    s.scorers = {"http://sc1:8001": "up"}  # one scorer answering: the generator's lines say it all
    assert "sc1" not in _text(render(s, "in.jsonl")) and "sc1" not in summary_line(s)
