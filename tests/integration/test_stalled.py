"""Every part hung, over real loopback HTTP: the run says within its watchdog's wait what it waits
on (``no progress for N s: waiting on scorer URL (K requests, oldest M s)``) and names each hung
scorer (``scorer URL: no answer for N s, K requests moved``), on the screen and in its log; once
the parts answer again it completes. ``--hang-floor 1`` stands for the default minute, so each
run takes seconds."""

from pathlib import Path

from tests.integration.test_scorer_pool import cmd, distinct_records
from tests.support import runner as R
from tests.support.fake_openai import FakeOpenAI
from tests.support.fake_scorer import FakeScorer

QUICK = ("--hang-floor", "1")


def run_log(db: Path) -> list[str]:
    path = Path(f"{db}.run.log")
    return path.read_text(encoding="utf-8").splitlines() if path.exists() else []


def stalled_lines(db: Path) -> list[str]:
    """The watchdog's lines in the run's log, without the time and level."""
    return [line.split(" WARN  ", 1)[1] for line in run_log(db) if " WARN  no progress for " in line]


def said(db: Path, *needles: str) -> bool:
    lines = run_log(db)
    return all(any(n in line for line in lines) for n in needles)


def finish(proc, db: Path) -> str:
    stdout, stderr = proc.communicate(timeout=300)
    assert proc.returncode == 0, stderr
    assert R.query(db, "select distinct status from record") == [("done",)]
    return stdout


def scorers_hung_then_back(tmp_path, fake: FakeOpenAI, scorers: list[FakeScorer], records: int) -> str:
    """A run on ``scorers`` that all hang: the lines, then they answer again and it completes."""
    inp = R.write_input(tmp_path / "in.jsonl", distinct_records(records))
    db = tmp_path / "run.db"
    proc = R.start(cmd(fake, scorers, inp, db, tmp_path / "out.jsonl", *QUICK))
    try:
        hung = [f"scorer {s.url}: no answer for " for s in scorers]
        assert R.wait_for(lambda: said(db, *hung, "SCORERS DOWN") and stalled_lines(db), timeout=120), run_log(db)
        assert proc.poll() is None, "the run stopped instead of waiting for a scorer"
        named = [f"scorer {s.url} (" for s in scorers] + ["a scorer to answer again ("]
        for line in stalled_lines(db):  # each says where the scoring requests are, however many and how old
            assert line.startswith("no progress for ") and ": waiting on " in line and ", oldest " in line, line
            assert any(n in line for n in named) and "endpoint" not in line, line
        for s in scorers:
            s.answer_again()
        stdout = finish(proc, db)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert all(f"scorer {s.url}: no answer for 1 s, " in stdout for s in scorers)  # the screen, as the log
    assert "no progress for " in stdout and "answers again" in stdout
    return stdout


def test_every_scorer_hung_from_the_start_is_said_and_the_run_completes_once_they_answer(tmp_path):
    """Their /health answers (the server's loop is alive) but no scoring request ever does: no
    latency is known, so the scorer's silence for --hang-floor is what finds it."""
    with FakeOpenAI() as fake, FakeScorer(hang_after=0, health_answers=True) as a, \
            FakeScorer(hang_after=0, health_answers=True) as b:
        scorers_hung_then_back(tmp_path, fake, [a, b], records=4)
        assert a.calls + b.calls > 0  # the held requests were answered, or asked again


def test_every_scorer_hanging_mid_run_is_said_and_the_run_completes_once_they_answer(tmp_path):
    with FakeOpenAI(delay_s=0.05) as fake, FakeScorer(hang_after=5) as a, FakeScorer(hang_after=5) as b:
        scorers_hung_then_back(tmp_path, fake, [a, b], records=12)
        assert sum(a.records.values()) + sum(b.records.values()) >= 12 * 3  # a draft and 2 steps each


def test_every_endpoint_hung_is_named_by_the_watchdog_and_the_run_completes_once_they_answer(tmp_path):
    """Both endpoints answer their preflight (two requests) and a draft, then nothing: the run says
    it waits on both."""
    inp = R.write_input(tmp_path / "in.jsonl", distinct_records(6))
    db = tmp_path / "run.db"
    with FakeOpenAI(hang_after=3) as a, FakeOpenAI(hang_after=3) as b, FakeScorer() as s:
        proc = R.start(R.run_cmd(a.url, inp, db, tmp_path / "out.jsonl", "fake", "--endpoint", b.url,
                                 "--scorer-url", s.url, "--max-steps", "1", "--concurrency", "4", *QUICK))
        try:
            def both_named() -> bool:
                lines = stalled_lines(db)
                return all(any(f"endpoint {e.url} (" in line for line in lines) for e in (a, b))

            assert R.wait_for(both_named, timeout=120), run_log(db)
            assert proc.poll() is None
            assert a.count("draft") <= 1 and b.count("draft") <= 1 and not R.query(db, "select * from record "
                                                                                  "where status = 'done'")
            a.answer_again()
            b.answer_again()
            stdout = finish(proc, db)
        finally:
            if proc.poll() is None:
                proc.kill()
    line = next(line for line in stalled_lines(db) if f"endpoint {a.url} (" in line)
    assert line.startswith("no progress for ") and ": waiting on " in line and ", oldest " in line
    assert "no progress for " in stdout
