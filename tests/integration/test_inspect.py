"""`status` and `show` on a real run's store: the numbers they show are the store's."""

import json
import re
import signal
import sys

import pytest

from agents import show, status
from tests.support import runner as R
from tests.support.fake_openai import FakeOpenAI


@pytest.fixture(scope="module")
def run(tmp_path_factory, tiny_model_dirs):
    tmp = tmp_path_factory.mktemp("inspect")
    inp = R.write_input(tmp / "in.jsonl")
    db = tmp / "run.db"
    with FakeOpenAI(faults=["400"]) as fake:  # a 400 is not retried: one record fails, with its reason
        p = R.run(R.run_cmd(fake.url, inp, db, tmp / "out.jsonl", tiny_model_dirs["llama"], "--max-steps", "3",
                            "--record-failures", "1", "--concurrency", "4"))
        billed = {k: sum(r.usage[k] for r in fake.log if r.kind != "other")
                  for k in ("prompt_tokens", "completion_tokens")}
    assert p.returncode == 1, p.stdout + p.stderr
    return db, billed


def test_status_shows_the_stores_numbers(run, capsys, monkeypatch):
    run_db, billed = run
    monkeypatch.setenv("COLUMNS", "10000")
    assert status.main(["--db", str(run_db), "--json"]) == 0
    snap = json.loads(capsys.readouterr().out)
    counts = dict(R.query(run_db, "select status, count(*) from record group by status"))
    assert {k: v for k, v in snap["records"].items() if v and k != "total"} == counts
    assert snap["records"]["total"] == 4 and counts == {"done": 3, "failed": 1}
    assert snap["steps"] == R.query(run_db, "select count(*) from step")[0][0] > 0
    assert snap["accepted_steps"] == R.query(run_db, "select count(chosen_node_id) from step")[0][0]
    [(initial, final)] = R.query(run_db, "select avg(initial_score), avg(final_score) from record where status='done'")
    assert snap["mean_score"] == {"initial": pytest.approx(initial), "final": pytest.approx(final)}
    # each request's usage counted once: the sums are what the endpoint billed
    assert snap["tokens"] == {"prompt": billed["prompt_tokens"], "completion": billed["completion_tokens"]}
    assert R.query(run_db, "select count(*) from node where idx > 0 and prompt_tokens is not null") == [(0,)]
    [(key, error)] = R.query(run_db, "select key, error from record where status = 'failed'")
    assert "HTTP 400" in error
    assert snap["problems"] == [{"reason": "failed: " + re.sub(r"\d+", "N", error), "count": 1, "example": key}]
    assert snap["config"]["search"]["max_steps"] == 3

    assert status.main(["--db", str(run_db)]) == 0
    text = capsys.readouterr().out
    assert "4/4  done 3  failed 1  skipped 0" in text
    assert f"steps        {snap['steps']}  accepted {snap['accepted_steps']}" in text
    assert f"│ {key}" in text and "HTTP N from the endpoint" in text  # the reason, with its example record
    assert '"max_steps": 3' in text and "characters" in text  # the config, prompts by their length


def test_status_of_a_missing_database_creates_nothing(tmp_path, capsys):
    assert status.main(["--db", str(tmp_path / "none.db")]) == 2
    assert "no such database" in capsys.readouterr().err and not (tmp_path / "none.db").exists()


def test_show_gives_a_records_tree_as_stored(run, capsys, monkeypatch):
    run_db, _ = run
    monkeypatch.setenv("COLUMNS", "10000")  # a line per line: no wrapping to read through
    [(key, rid)] = R.query(run_db, "select key, id from record where status = 'done' and steps_done > 0 "
                                   "order by position limit 1")
    assert show.main(["--db", str(run_db), "--record", key, "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    steps = R.query(run_db, f"select step, segment, chosen_node_id, best_after from step where record_id = {rid} "
                            "order by step")
    assert [(s["step"], s["segment"], s["chosen_node_id"], s["best_after"]) for s in data["steps"]] == steps
    for s in data["steps"]:
        cands = R.query(run_db, f"select id, score, rejected from node where record_id = {rid} and step = {s['step']} "
                                "order by idx")
        assert [(c["id"], c["score"], c["rejected"]) for c in s["candidates"]] == cands
    assert data["drafts"] and data["final_thinking"] == R.query(run_db, f"select final_thinking from record where id = {rid}")[0][0]

    assert show.main(["--db", str(run_db), "--record", key]) == 0
    text = capsys.readouterr().out
    assert f"record {key}" in text and "draft (attempt 1)" in text and "step 0" in text
    if any(s["chosen_node_id"] for s in data["steps"]):
        assert "✓ chosen" in text
    long_segment = max((s["segment"] for s in data["steps"]), key=len)
    assert show.main(["--db", str(run_db), "--record", key, "--full"]) == 0
    assert long_segment.splitlines()[-1] in capsys.readouterr().out


def test_show_of_an_unknown_record(run, capsys):
    run_db, _ = run
    assert show.main(["--db", str(run_db), "--record", "nope"]) == 2
    assert "holds no record 'nope'" in capsys.readouterr().err


def test_status_watch_follows_until_ctrl_c(run):
    run_db, _ = run
    proc = R.start([sys.executable, "-m", "agents.status", "--db", str(run_db), "--watch", "0.2"])
    lines = [proc.stdout.readline() for _ in range(2)]
    proc.send_signal(signal.SIGINT)
    assert proc.wait(timeout=30) == 0, proc.stderr.read()
    for line in lines:
        assert "done 3, failed 1, skipped 0, running 0, pending 0 of 4" in line, lines
