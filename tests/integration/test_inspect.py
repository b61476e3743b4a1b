"""`status`, `show` and `export` on a real run's store: what they show and write is the store's."""

import json
import re
import signal
import sys

import datasets
import pyarrow.parquet as pq
import pytest

from agents.inspect import export, report, show, status
from tests.support import runner as R
from tests.support.fake_openai import FakeOpenAI


@pytest.fixture(scope="module")
def run(tmp_path_factory, tiny_model_dirs):
    tmp = tmp_path_factory.mktemp("inspect")
    inp = R.write_input(tmp / "in.jsonl", [{**r, "source": f"s{i}", "rating": i} for i, r in enumerate(R.RECORDS)])
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
    assert snap["cost_usd"] is None
    assert status.main(["--db", str(run_db), "--json", "--price-in", "2", "--price-out", "8"]) == 0
    priced = json.loads(capsys.readouterr().out)
    assert priced["cost_usd"] == pytest.approx((billed["prompt_tokens"] * 2 + billed["completion_tokens"] * 8) / 1e6)

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
    proc = R.start([sys.executable, "-m", "agents.inspect.status", "--db", str(run_db), "--watch", "0.2"])
    lines = [proc.stdout.readline() for _ in range(2)]
    proc.send_signal(signal.SIGINT)
    assert proc.wait(timeout=30) == 0, proc.stderr.read()
    for line in lines:
        assert "done 3, failed 1, skipped 0, running 0, pending 0 of 4" in line, lines


def test_export_formats_round_trip_with_the_inputs_columns_and_provenance(run, tmp_path, capsys, tiny_model_dirs):
    run_db, _ = run
    assert export.main(["--db", str(run_db), "--out", str(tmp_path / "r.jsonl")]) == 0
    rows = R.read_jsonl(tmp_path / "r.jsonl")
    assert "wrote 3 records" in capsys.readouterr().out
    done = R.query(run_db, "select key, final_score, lang from record where status = 'done' order by position")
    assert [(r["id"], r["final_score"], r["lang"]) for r in rows] == done
    by_id = {r["id"]: i for i, r in enumerate(R.RECORDS)}
    assert all(r["source"] == f"s{by_id[r['id']]}" and r["rating"] == by_id[r["id"]] for r in rows)
    assert {r["scorer_model"] for r in rows} == {str(tiny_model_dirs["llama"])} and rows[0]["reer_version"]
    assert rows[0]["generator_model"] == "fake-model" and len(rows[0]["config_hash"]) == 32

    assert export.main(["--db", str(run_db), "--out", str(tmp_path / "r.parquet")]) == 0
    assert pq.read_table(tmp_path / "r.parquet").to_pylist() == rows
    assert export.main(["--db", str(run_db), "--out", str(tmp_path / "ds"), "--format", "hf"]) == 0
    ds = datasets.load_from_disk(str(tmp_path / "ds"))
    assert ds.to_list() == rows
    card = (tmp_path / "ds" / "README.md").read_text()
    assert "records: 3 (of 3 done; left out: none)" in card and "generator: fake-model" in card
    capsys.readouterr()
    # no hub here (tests run offline): the push fails with one line, the local copy is written
    assert export.main(["--db", str(run_db), "--out", str(tmp_path / "ds2"), "--format", "hf",
                        "--push-to-hub", "someone/reer-test"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("reer: error: push to someone/reer-test failed") and f"is in {tmp_path / 'ds2'}" in err
    assert datasets.load_from_disk(str(tmp_path / "ds2")).to_list() == rows

    assert export.main(["--db", str(run_db), "--out", str(tmp_path / "rc.jsonl"),
                        "--messages-format", "reasoning_content"]) == 0
    assistant = R.read_jsonl(tmp_path / "rc.jsonl")[0]["messages"][1]
    assert assistant == {"role": "assistant", "content": rows[0]["answer"], "reasoning_content": rows[0]["thinking"]}


def test_export_for_other_trainers_llamafactory_trl_and_gpt_oss_thinking(run, tmp_path, capsys):
    run_db, _ = run
    out = tmp_path / "my set"
    assert export.main(["--db", str(run_db), "--out", str(out), "--format", "hf", "--messages-format", "thinking",
                        "--prompt-completion"]) == 0
    rows = datasets.load_from_disk(str(out)).to_list()  # LLaMA-Factory's files leave datasets' own alone
    row = rows[0]
    assert row["messages"][1] == {"role": "assistant", "content": row["answer"], "thinking": row["thinking"]}

    def turns(ms):  # Arrow gives every turn of a column the same keys, None where a turn has none
        return [{k: v for k, v in m.items() if v is not None} for m in ms]

    assert turns(row["prompt"]) == turns(row["messages"][:1]) and turns(row["completion"]) == turns(row["messages"][1:])
    config = json.loads((out / export.CONFIG_FILE).read_text())
    assert config["config_hash"] == row["config_hash"] and config["generator_model"] == "fake-model"
    info = json.loads((out / "llamafactory" / "dataset_info.json").read_text())
    assert info == {"my_set": {"file_name": "my_set.jsonl", "formatting": "sharegpt",
                               "columns": {"messages": "messages"},
                               "tags": {"role_tag": "role", "content_tag": "content", "user_tag": "user",
                                        "assistant_tag": "assistant", "system_tag": "system"}}}
    lf = R.read_jsonl(out / "llamafactory" / "my_set.jsonl")
    assert len(lf) == len(rows) and lf[0]["messages"][0] == {"role": "user", "content": row["question"]}
    assert lf[0]["messages"][1]["content"] == f"<think>\n{row['thinking']}\n</think>\n\n{row['answer']}"


def test_export_filters_say_what_they_left_out(run, tmp_path, capsys):
    run_db, _ = run
    scores = sorted(s for s, in R.query(run_db, "select final_score from record where status = 'done'"))
    cut = scores[1]  # keeps the two best
    assert export.main(["--db", str(run_db), "--out", str(tmp_path / "f.jsonl"), "--max-score", str(cut),
                        "--lang", "en"]) == 0
    kept = R.read_jsonl(tmp_path / "f.jsonl")
    langs = dict(R.query(run_db, "select key, lang from record where status = 'done'"))
    assert {r["id"] for r in kept} == {k for k, s in R.query(run_db, "select key, final_score from record "
                                                                     "where status = 'done'")
                                       if s <= cut and langs[k] == "en"}
    out = capsys.readouterr().out
    zh = sum(1 for v in langs.values() if v == "zh")
    assert f"wrote {len(kept)} records" in out and (f"{zh} x language not en" in out if zh else True)
    assert export.main(["--db", str(run_db), "--out", str(tmp_path / "x.csv")]) == 2
    assert "give --format jsonl, parquet or hf" in capsys.readouterr().err


def test_report_is_one_page_of_plots_with_the_stores_numbers(run, tmp_path, capsys):
    run_db, billed = run
    assert report.main(["--db", str(run_db), "--out", str(tmp_path / "rep"), "--price-in", "1"]) == 0
    assert "6 plots, 3 done records" in capsys.readouterr().out
    pngs = sorted(p.name for p in (tmp_path / "rep").glob("*.png"))
    assert pngs == ["acceptance_by_step.png", "failures_by_reason.png", "score_by_step.png", "scores.png",
                    "thinking_length.png", "tokens_and_time.png"]
    for name in pngs:
        data = (tmp_path / "rep" / name).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5000  # a real image, not an empty canvas
    page = (tmp_path / "rep" / "report.html").read_text()
    assert page.count("src='data:image/png;base64,") == 6  # self-contained
    assert "done 3, failed 1, skipped 0" in page
    steps = R.query(run_db, "select count(*) from step")[0][0]
    assert f"<b>steps</b> {steps} (" in page and f"{billed['prompt_tokens']} prompt" in page
    assert f"cost ${billed['prompt_tokens'] / 1e6:,.2f}" in page
    for key, in R.query(run_db, "select key from record where status = 'done'"):
        assert f"<a href='#rec-{key}'>" in page and f"<section id='rec-{key}'>" in page  # linked to its tree
