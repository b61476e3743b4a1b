import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from agents.errors import InputError
from agents.search.inputs import read_records


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return path


def test_jsonl_json_and_parquet_read_the_same(tmp_path):
    rows = [{"question": "Q1", "solution": "A1", "id": "a"}, {"question": "写诗", "answer": "诗", "index": 7}]
    a = read_records(write_jsonl(tmp_path / "x.jsonl", rows)).records
    (tmp_path / "x.json").write_text(json.dumps(rows))
    b = read_records(tmp_path / "x.json").records
    pq.write_table(pa.Table.from_pylist([{"question": r["question"], "response": r.get("solution") or r["answer"]}
                                         for r in rows]), tmp_path / "x.parquet")
    c = read_records(tmp_path / "x.parquet").records
    assert [(r.key, r.question, r.answer, r.lang) for r in a] == [("a", "Q1", "A1", "en"), ("7", "写诗", "诗", "zh")]
    assert [r.answer for r in b] == [r.answer for r in c] == ["A1", "诗"]
    assert [r.key for r in c] == ["0", "1"]  # no id: the position


def test_old_thinking_in_the_solution_is_cut_and_kept(tmp_path):
    [r] = read_records(write_jsonl(tmp_path / "x.jsonl", [{"question": "q", "solution": "<think>a</think>x</think>\n The answer. "}])).records
    assert r.answer == "The answer."
    assert r.meta["original_thinking"] == "<think>a</think>x"


@pytest.mark.parametrize(
    "content, where, message",
    [
        ('{"question": "q", "solution": "a"}\n{"question": \n', "line 2", "broken JSON"),
        ('{"solution": "a"}\n', "line 1", "question"),
        ('{"question": "q", "solution": "   "}\n', "line 1", "empty answer"),
        ('{"question": "q"}\n', "line 1", "no answer"),
        ('{"question": "q", "solution": 3}\n', "line 1", "must be a string"),
        ('{"question": "q", "solution": "a", "id": 1}\n{"question": "r", "solution": "b", "id": 1}\n', "line 2", "duplicate id"),
        ('[1, 2]\n', "line 1", "expected an object"),
    ],
)
def test_bad_records_name_the_file_the_line_and_the_fix(tmp_path, content, where, message):
    path = tmp_path / "bad.jsonl"
    path.write_text(content)
    with pytest.raises(InputError) as err:
        read_records(path)
    assert str(path) in str(err.value) and where in str(err.value) and message in str(err.value)


def test_unknown_type_non_utf8_and_empty_files(tmp_path):
    (tmp_path / "x.csv").write_text("question,solution\n")
    with pytest.raises(InputError, match="unknown file type"):
        read_records(tmp_path / "x.csv")
    (tmp_path / "x.jsonl").write_bytes(b'{"question": "q", "solution": "\xff"}\n')
    with pytest.raises(InputError, match="UTF-8"):
        read_records(tmp_path / "x.jsonl")
    (tmp_path / "e.jsonl").write_text("\n")
    with pytest.raises(InputError, match="no usable records"):
        read_records(tmp_path / "e.jsonl")
    with pytest.raises(InputError, match="no such file"):
        read_records(tmp_path / "missing.jsonl")


def test_by_default_bad_records_are_skipped_and_reported(tmp_path):
    path = tmp_path / "mixed.jsonl"
    path.write_bytes(b'{"question": "q1", "solution": "a1", "id": 1}\n'
                     b'{"question": "q2", "solution": \n'
                     b'{"question": "q3", "solution": "\xff"}\n'
                     b'{"question": "q4", "solution": "a4", "id": 1}\n'
                     b'{"question": "q5", "solution": "a5"}\n')
    inputs = read_records(path, strict=False)
    assert [r.question for r in inputs.records] == ["q1", "q5"]
    assert [p.where for p in inputs.problems] == ["line 2", "line 3", "line 4"]
    assert "UTF-8" in str(inputs.problems[1]) and "duplicate id '1'" in str(inputs.problems[2])
    with pytest.raises(InputError, match="line 2"):
        read_records(path, strict=True)


@pytest.mark.parametrize("line, reason", [
    ('{"question": "q \\ud800", "solution": "a"}', "'question' holds a lone surrogate (\\ud800)"),
    ('{"question": "q", "solution": "a\\u0000b"}', "'solution' holds a NUL character"),
    ('{"id": "x\\u0000", "question": "q", "solution": "a"}', "id holds a NUL character"),
    ('{"id": ' + "9" * 5000 + ', "question": "q", "solution": "a"}', "a number too long to read"),
    ('{"id": "' + "k" * 300 + '", "question": "q", "solution": "a"}', "id of 300 characters; ids are at most 256"),
    ("[" * 200_000 + "]" * 200_000, "JSON nested too deeply to read"),
])
def test_input_no_store_can_keep_is_a_bad_record_not_a_crash(tmp_path, line, reason):
    path = tmp_path / "in.jsonl"
    path.write_text(line + '\n{"question": "ok", "solution": "fine"}\n', encoding="utf-8", errors="surrogatepass")
    inputs = read_records(path, strict=False)
    assert [r.question for r in inputs.records] == ["ok"]
    [problem] = inputs.problems
    assert str(problem).startswith(f"{path}: line 1: ") and reason in str(problem)
    with pytest.raises(InputError, match="line 1"):
        read_records(path, strict=True)


def test_a_json_file_nested_too_deeply_cannot_be_read_at_all(tmp_path):
    path = tmp_path / "in.json"
    path.write_text("[" * 200_000 + "]" * 200_000)
    with pytest.raises(InputError, match="JSON nested too deeply to read"):
        read_records(path, strict=False)


def test_the_inputs_own_columns_are_kept_as_any_store_takes_them(tmp_path):
    f = tmp_path / "in.jsonl"
    f.write_text(json.dumps({"id": "a", "question": "q", "solution": "s", "source": "wp", "score": float("nan"),
                             "tags": ["x", {"k": 1.5}]}) + "\n"
                 + json.dumps({"question": "q2", "solution": "s2", "note": "bad\u0000"}) + "\n")
    got = read_records(f, strict=False)
    assert got.records[0].meta["extra"] == {"source": "wp", "score": None, "tags": ["x", {"k": 1.5}]}
    assert [str(p) for p in got.problems] == [f"{f}: line 2: column 'note' holds a NUL character (\\u0000), which "
                                              "PostgreSQL cannot store: remove it"]


def test_an_input_is_read_a_line_at_a_time_and_stored_a_batch_at_a_time(tmp_path):
    """What a worker holds at its start is the input's records once: not its file's bytes and
    lines besides (3x), nor an ORM object per record while the run is created (~1.5x more)."""
    import tracemalloc

    from store import Store

    path = tmp_path / "in.jsonl"
    path.write_text("".join(json.dumps({"id": f"r{i}", "question": f"q{i}", "solution": "x" * 3000}) + "\n"
                            for i in range(2000)))
    size = path.stat().st_size
    tracemalloc.start()
    try:
        records = read_records(path).records
        _, read_peak = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        held, _ = tracemalloc.get_traced_memory()
        Store.open(str(tmp_path / "x.db")).begin_run({"search": {}}, str(path), records)
        _, begin_peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert len(records) == 2000
    assert read_peak < 1.5 * size, (read_peak, size)  # here 1.1x; the whole file read first: 3.2x
    assert begin_peak - held < 0.5 * size, (begin_peak - held, size)  # here 0.2x; ORM objects: 1.5x
