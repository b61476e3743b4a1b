"""Full runs of ``agents.run`` against a real loopback server and the real scorer process."""

import json
import sys

import pytest

from tests.support import runner as R
from tests.support.fake_openai import FakeOpenAI


@pytest.fixture
def inp(tmp_path):
    return R.write_input(tmp_path / "in.jsonl")


@pytest.mark.parametrize("mode", ["chat", "completions"])
def test_full_run_writes_results_and_the_search_tree(tmp_path, inp, tiny_model_dirs, mode):
    db, out = tmp_path / "run.db", tmp_path / "out.jsonl"
    extra = ["--max-steps", "3", "--mode", mode] + (["--chat-format", "chatml"] if mode == "completions" else [])
    with FakeOpenAI(supports_n=(mode == "chat")) as fake:
        p = R.run(R.run_cmd(fake.url, inp, db, out, tiny_model_dirs["llama"], *extra), mark=f"full-{mode}")
        assert p.returncode == 0, p.stderr + p.stdout
        rows = R.read_jsonl(out)
        assert [r["id"] for r in rows] == ["sea", "shop", "autumn", "essay"]
        for r in rows:
            assert r["thinking"] and r["final_score"] <= r["initial_score"]
            assert 1 <= r["steps"] <= 3
            assert r["messages"][1]["content"] == f"<think>\n{r['thinking']}\n</think>\n\n{r['answer']}"
            # the prefilled trigger opens the thinking, over the chat API as in completions mode
            assert r["initial_thinking"].split(",")[0].split(" the")[0] in ("Okay", "Alright", "好的", "嗯")
        # every step asked for exactly `expansions` candidates; every candidate is stored and scored
        assert fake.choices_generated("edit") == sum(r["steps"] for r in rows) * 2
        assert R.query(db, "select count(*) from node where kind='candidate' and score is null and rejected is null") == [(0,)]
        assert R.query(db, "select count(*) from node where kind='candidate'") == [(fake.choices_generated("edit"),)]
        assert R.query(db, "select distinct status from record") == [("done",)]
        # accepted steps lower the best score monotonically
        for rid, in R.query(db, "select id from record"):
            bests = [b for b, in R.query(db, f"select best_after from step where record_id={rid} order by step")]
            assert bests == sorted(bests, reverse=True)
        if mode == "completions":
            assert all(r.endpoint == "completions" for r in fake.log if r.kind != "other")
            assert not fake.supports_n and all(r.n == 1 for r in fake.log)
    # the export command rebuilds the same file from the store alone
    out2 = tmp_path / "export.jsonl"
    e = R.run([sys.executable, "-m", "agents.inspect.export", "--db", str(db), "--out", str(out2)])
    assert e.returncode == 0, e.stderr
    assert R.read_jsonl(out2) == rows
    assert R.none_left(f"full-{mode}"), "the scorer outlived the run"


def test_rerun_of_a_finished_run_generates_nothing(tmp_path, inp, tiny_model_dirs):
    db, out = tmp_path / "run.db", tmp_path / "out.jsonl"
    with FakeOpenAI() as fake:
        cmd = R.run_cmd(fake.url, inp, db, out, tiny_model_dirs["llama"], "--max-steps", "2")
        assert R.run(cmd).returncode == 0
        first = R.read_jsonl(out)
        before = len(fake.log)
        again = R.run(cmd)
        assert again.returncode == 0, again.stderr
        assert len([r for r in fake.log[before:] if r.kind != "other"]) == 0
        assert "resumed 0 records" in again.stdout and "starting the scorer" not in again.stdout  # nothing to score
        assert R.read_jsonl(out) == first


def test_changed_settings_are_refused_then_forced(tmp_path, inp, tiny_model_dirs):
    db, out = tmp_path / "run.db", tmp_path / "out.jsonl"
    with FakeOpenAI() as fake:
        assert R.run(R.run_cmd(fake.url, inp, db, out, tiny_model_dirs["llama"], "--max-steps", "1")).returncode == 0
        p = R.run(R.run_cmd(fake.url, inp, db, out, tiny_model_dirs["llama"], "--max-steps", "2"))
        assert p.returncode == 2
        assert "search.max_steps: 1 -> 2" in p.stderr and "--force" in p.stderr
        assert p.stderr.count("\n") == 1  # one clear line
        f = R.run(R.run_cmd(fake.url, inp, db, out, tiny_model_dirs["llama"], "--max-steps", "2", "--force"))
        assert f.returncode == 0, f.stderr
        R.write_input(inp, [R.RECORDS[0], {**R.RECORDS[1], "solution": "Fresh bread.\n\nEvery morning, from six."}])
        p = R.run(R.run_cmd(fake.url, inp, db, out, tiny_model_dirs["llama"], "--max-steps", "2"))
        assert p.returncode == 2 and p.stderr.count("\n") == 1, p.stderr
        assert "different input (1 changed: shop; 2 removed: autumn, essay)" in p.stderr


@pytest.mark.parametrize(
    "content, fragment",
    [
        ('{"question": "q", "solution": "a"}\n{"question": "q2", "solution": \n', "line 2: broken JSON"),
        ('{"question": "q", "solution": ""}\n', "line 1: empty answer"),
        ('{"solution": "a"}\n', "line 1: missing or empty 'question'"),
        ('{"question": "q", "solution": "a"}\n' + "[" * 100_000 + "]" * 100_000 + "\n", "line 2: JSON nested too deeply"),
    ],
)
def test_strict_bad_input_fails_at_once_with_one_line_and_writes_nothing(tmp_path, tiny_model_dirs, content, fragment):
    bad = tmp_path / "bad.jsonl"
    bad.write_text(content)
    db, out = tmp_path / "run.db", tmp_path / "out.jsonl"
    with FakeOpenAI() as fake:
        p = R.run(R.run_cmd(fake.url, bad, db, out, tiny_model_dirs["llama"], "--strict"))
        assert p.returncode == 2
        lines = p.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith(f"reer: error: {bad}: {fragment}")
        assert not db.exists() and not out.exists() and not fake.log


def test_bad_records_are_skipped_listed_and_the_rest_runs(tmp_path, tiny_model_dirs):
    bad = tmp_path / "mixed.jsonl"
    good = R.RECORDS[0]
    bad.write_bytes(json.dumps(good).encode() + b"\n"
                    + b'{"question": "q2", "solution": \n'          # broken JSON
                    + b'{"question": "", "solution": "a"}\n'        # empty question
                    + b'{"question": "q", "solution": ["a"]}\n'     # not a string
                    + b'{"question": "q", "solution": "\xff\xfe"}\n'  # not UTF-8
                    + json.dumps({**good, "question": "other"}).encode() + b"\n"  # duplicate id
                    + b'{"question": "q\\ud800", "solution": "a"}\n'  # a lone surrogate
                    + b'{"question": "q", "solution": "a\\u0000"}\n'  # NUL, which PostgreSQL cannot store
                    + b'{"id": ' + b"9" * 5000 + b', "question": "q", "solution": "a"}\n')  # a 5,000-digit id
    db, out = tmp_path / "run.db", tmp_path / "out.jsonl"
    with FakeOpenAI() as fake:
        p = R.run(R.run_cmd(fake.url, bad, db, out, tiny_model_dirs["llama"], "--max-steps", "1"))
    assert p.returncode == 1, p.stderr  # the run finished, but not every input record was usable
    assert [r["id"] for r in R.read_jsonl(out)] == [good["id"]]
    for where in ("line 2: broken JSON", "line 3: missing or empty 'question'", "line 4: 'solution' must be a string",
                  "line 5: not valid UTF-8", "line 6: duplicate id", "line 7: 'question' holds a lone surrogate",
                  "line 8: 'solution' holds a NUL character", "line 9: a number too long to read"):
        assert where in p.stdout


def test_unknown_file_type_and_unreachable_endpoint(tmp_path, tiny_model_dirs):
    (tmp_path / "x.csv").write_text("q,a\n")
    p = R.run(R.run_cmd("http://127.0.0.1:9/v1", tmp_path / "x.csv", tmp_path / "d.db", tmp_path / "o.jsonl",
                        tiny_model_dirs["llama"]))
    assert p.returncode == 2 and "unknown file type '.csv'" in p.stderr
    inp = R.write_input(tmp_path / "in.jsonl")
    p = R.run(R.run_cmd("http://127.0.0.1:9/v1", inp, tmp_path / "d.db", tmp_path / "o.jsonl",
                        tiny_model_dirs["llama"], "--max-retries", "1"))
    assert p.returncode == 2 and "connection failed" in p.stderr


def test_answers_the_scorer_cannot_hold_are_skipped_before_any_generation(tmp_path, tiny_model_dirs):
    huge = {"id": "huge", "question": "Summarise.", "solution": ("word " * 4_000_000)[:20_000_000]}  # a 20 MB answer
    long = {"id": "long", "question": "Summarise.", "solution": "A sentence of the answer. " * 120}
    tags = {"id": "tags", "question": "Explain the tags.",
            "solution": "Use <refine> and </answer> literally in the text, as shown here, and keep reading on.\n\n"
                        "Then <think> blocks open and </refine> closes: none of it is markup for reer at all."}
    inp = R.write_input(tmp_path / "in.jsonl", [huge, long, tags, R.RECORDS[0]])
    db, out = tmp_path / "run.db", tmp_path / "out.jsonl"
    with FakeOpenAI() as fake:
        # the short scoring prompt: a budget of 900 tokens fits it with room for one record's text
        p = R.run(R.run_cmd(fake.url, inp, db, out, tiny_model_dirs["llama"], "--max-steps", "1",
                            "--max-context", "900", "--scoring-prompt", "short"), timeout=600)
        drafted = {r.task for r in fake.log if r.kind == "draft"}
    assert p.returncode == 0, p.stdout + p.stderr
    errors = dict(R.query(db, "select key, error from record where status = 'skipped'"))
    assert set(errors) == {"huge", "long"} and all("over the scorer's context of 900" in e for e in errors.values())
    assert "Summarise." not in drafted  # nothing was generated for them
    rows = {r["id"]: r for r in R.read_jsonl(out)}
    assert rows["tags"]["answer"] == tags["solution"] and rows["tags"]["final_score"] is not None
