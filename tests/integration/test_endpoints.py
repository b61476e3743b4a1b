"""``agents.run`` with default flags against servers that behave like vLLM, llama.cpp and OpenAI.

Each run is a real subprocess over loopback HTTP; the scorer is the instant fake one, since what
is under test here is what reaches the endpoint and what comes back from it.
"""

import json
import random
import time
from collections import Counter

import pytest

from agents.generation.prefill import DRAFT_TRIGGERS, draft_prefill
from tests.support import runner as R
from tests.support.fake_openai import FakeOpenAI
from tests.support.fake_scorer import FakeScorer

TRIGGERS = tuple(p for p, _ in DRAFT_TRIGGERS["en"])


def records(n: int) -> list[dict]:
    return [{"id": f"r{i}", "question": f"Write a short note number {i} about the sea.",
             "solution": f"Note {i}: the sea keeps its own hours.\n\n" + "It rises and falls and asks for nothing. " * 4}
            for i in range(n)]


def run_against(fake: FakeOpenAI, tmp_path, recs, *extra: str, expect: int = 0):
    inp = R.write_input(tmp_path / "in.jsonl", recs)
    db, out = tmp_path / "run.db", tmp_path / "out.jsonl"
    with FakeScorer() as scorer:
        cmd = R.run_cmd(fake.url, inp, db, out, "fake", "--scorer-url", scorer.url, "--max-steps", "1", *extra)
        t0 = time.monotonic()
        p = R.run(cmd, timeout=300)
        p.wall_s = time.monotonic() - t0
    assert p.returncode == expect, p.stdout + p.stderr
    return p, db, out


def drafts(db) -> dict[str, str]:
    return dict(R.query(db, "select r.key, n.text from node n join record r on r.id = n.record_id "
                            "where n.kind = 'draft' and n.rejected is null"))


@pytest.mark.parametrize("server", [
    dict(flavor="vllm"),
    dict(flavor="vllm", reasoning_field="reasoning", template_opens_think=True),
    dict(flavor="vllm", reasoning_field="reasoning_content"),
    dict(flavor="llamacpp"),
    dict(flavor="llamacpp", reasoning_field="reasoning_content"),
])
def test_default_flags_on_servers_that_continue_a_turn_give_drafts_the_reference_triggers(tmp_path, server):
    recs = records(30)
    with FakeOpenAI(**server) as fake:
        p, db, out = run_against(fake, tmp_path, recs)
        assert "prefill continued via continue_final_message" in p.stdout and "WARNING" not in p.stdout
        generated = [r for r in fake.log if r.kind != "other"]
        assert generated and all(r.continued for r in generated)
        assert all("top_k" not in r.body and "stop" not in r.body for r in generated)
        if server["flavor"] == "llamacpp":
            assert all(r.body.get("n", 1) == 1 for r in generated)
    rows = R.read_jsonl(out)
    assert [r["id"] for r in rows] == [r["id"] for r in recs]
    got = drafts(db)
    # Seeded per record: each draft begins with the phrase its (seed, record) draws, at the
    # reference's rates (tests/unit/test_prefill.py checks the rates over many draws).
    for key, text in got.items():
        phrase = draft_prefill("en", random.Random(f"0/{key}/0")).removeprefix("<think>\n")
        assert text.startswith(phrase) and text.count(phrase) == 1, (key, text[:60])  # an echo is not kept twice
        assert "</think>" not in text and "The answer" not in text
    mix = Counter(next(t for t in sorted(TRIGGERS, key=len, reverse=True) if text.startswith(t))
                  for text in got.values())
    assert set(mix) == set(TRIGGERS), mix  # all three phrases occur among 30 records


def test_default_flags_on_openai_run_without_prefill_and_say_so_once(tmp_path):
    with FakeOpenAI(flavor="openai", model="gpt-4o-mini") as fake:
        p, db, out = run_against(fake, tmp_path, records(4))
        generated = [r for r in fake.log if r.kind != "other"]
        assert generated and not fake.refused[1:]  # only the continuation probe was refused
        assert all(r.body["messages"][-1]["role"] == "user" for r in generated)
    assert p.stdout.count("WARNING: this endpoint cannot continue a prefilled assistant turn") == 1
    assert "continue_final_message" in p.stdout and "NO prefill" in p.stdout
    assert len(R.read_jsonl(out)) == 4
    assert not any(t.startswith(TRIGGERS) for t in drafts(db).values())


def test_openai_reasoning_model_gets_max_completion_tokens(tmp_path):
    with FakeOpenAI(flavor="openai", model="o3-mini") as fake:
        p, db, out = run_against(fake, tmp_path, records(2), "--model", "o3-mini",
                                 "--extra-body", json.dumps({"temperature": None, "top_p": None}))
        generated = [r for r in fake.log if r.kind != "other"]
        assert all(r.body["max_completion_tokens"] == 8000 and "max_tokens" not in r.body for r in generated)
    assert "length as max_completion_tokens" in p.stdout and len(R.read_jsonl(out)) == 2


def test_a_bad_extra_body_field_stops_the_run_at_once_naming_the_field(tmp_path):
    with FakeOpenAI(flavor="openai", model="gpt-4o-mini") as fake:
        p, db, out = run_against(fake, tmp_path, records(3), "--extra-body", '{"min_p": 0.05}', expect=2)
        assert not fake.log and not [b for b in fake.refused if "min_p" not in b]  # nothing generated
        assert len(fake.refused) == 2  # the probe with continuation, then without: no retries
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and "the field 'min_p' is refused" in lines[0]
    assert "--extra-body '{\"min_p\": null}'" in lines[0]
    assert not db.exists() and not out.exists()
    print(f"stopped after {p.wall_s:.2f} s, interpreter start included")


def test_a_run_whose_every_record_is_skipped_exits_1_with_the_reasons(tmp_path):
    with FakeOpenAI(flavor="vllm", faults=["notags"] * 3) as fake:
        p, db, out = run_against(fake, tmp_path, records(3), expect=1)
    assert R.read_jsonl(out) == []
    assert "no record produced a result; by reason:" in p.stdout
    assert "3 x skipped: draft rejected: draft thinking is a single segment (e.g. record r0)" in p.stdout


def test_an_unexpected_error_exits_2_with_one_line_and_the_traceback_in_a_log(tmp_path):
    inp = R.write_input(tmp_path / "in.jsonl", records(2))
    db, out = tmp_path / "run.db", tmp_path / "out.jsonl"
    # a defect, planted at a seam: the pre-search check raises what no handler expects
    planted = ("import sys, agents.run as r, agents.search.record as s\n"
               "async def boom(self, records): raise TypeError('a planted defect')\n"
               "s.RecordSearch.precheck = boom\n"
               "sys.exit(r.main(sys.argv[1:]))")
    with FakeOpenAI() as fake, FakeScorer() as scorer:
        cmd = R.run_cmd(fake.url, inp, db, out, "fake", "--scorer-url", scorer.url)
        p = R.run([cmd[0], "-c", planted, *cmd[3:]])
    assert p.returncode == 2, p.stdout + p.stderr
    [line] = p.stderr.strip().splitlines()
    assert line.startswith("reer: error: unexpected TypeError") and f"traceback in {db}.error.log" in line
    assert "Traceback (most recent call last)" in (tmp_path / "run.db.error.log").read_text()


def test_a_prompts_dir_typo_stops_the_run_before_anything_starts(tmp_path):
    inp = R.write_input(tmp_path / "in.jsonl", records(2))
    db, out = tmp_path / "run.db", tmp_path / "out.jsonl"
    with FakeOpenAI() as fake, FakeScorer() as scorer:
        p = R.run(R.run_cmd(fake.url, inp, db, out, "fake", "--scorer-url", scorer.url,
                            "--prompts-dir", str(tmp_path / "promtps")))
        assert not fake.log and not fake.refused  # not even the preflight
    assert p.returncode == 2 and p.stderr.strip().splitlines() == [f"reer: error: --prompts-dir {tmp_path / 'promtps'} "
                                                                    "does not exist"]
    assert not db.exists()
