"""Input users already have: Hugging Face datasets (offline: local folders), the reference's
extra_info.index, and conversations in messages[] with the thinking apart."""

import json

import pytest

from agents.errors import InputError
from agents.options import input_stem
from agents.search.hub import split_spec
from agents.search.inputs import read_records

datasets = pytest.importorskip("datasets")

ROWS = [{"question": "Q1", "solution": "A1", "extra_info": {"index": 11, "split": "train"}},
        {"question": "Q2", "solution": "A2", "extra_info": {"index": 12, "split": "train"}}]


@pytest.fixture(autouse=True)
def offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")


def test_a_save_to_disk_folder_reads_as_a_file_does_keyed_on_extra_info_index(tmp_path):
    datasets.Dataset.from_list(ROWS).save_to_disk(str(tmp_path / "ds"))
    inputs = read_records(tmp_path / "ds")
    assert [(r.key, r.question, r.answer) for r in inputs.records] == [("11", "Q1", "A1"), ("12", "Q2", "A2")]
    assert inputs.records[0].meta["extra"]["extra_info"] == {"index": 11, "split": "train"}  # kept for the export
    datasets.DatasetDict({"test": datasets.Dataset.from_list(ROWS[:1]),
                          "train": datasets.Dataset.from_list(ROWS)}).save_to_disk(str(tmp_path / "dd"))
    assert len(read_records(tmp_path / "dd").records) == 2  # the train split


def test_hf_names_a_dataset_and_its_split(tmp_path):
    folder = tmp_path / "hub"
    folder.mkdir()
    (folder / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in ROWS))
    (folder / "test.jsonl").write_text(json.dumps({**ROWS[0], "question": "T"}) + "\n")
    assert [r.question for r in read_records(f"hf:{folder}").records] == ["Q1", "Q2"]
    assert [r.question for r in read_records(f"hf:{folder}:test").records] == ["T"]
    with pytest.raises(InputError, match="cannot load the dataset.*check the name and the split"):
        read_records(f"hf:{folder}:validation")
    assert split_spec("hf:org/name") == ("org/name", "train") and split_spec("hf:org/name:test") == ("org/name", "test")
    assert input_stem("hf:org/name:test") == "name-test"


def test_bad_rows_of_a_dataset_are_reported_as_a_files_are(tmp_path):
    rows = [{"question": "Q1", "solution": "A1", "id": "a"}, {"question": "", "solution": "A2", "id": "b"},
            {"question": "Q3", "solution": "A3", "id": "a"}]
    datasets.Dataset.from_list(rows).save_to_disk(str(tmp_path / "ds"))
    inputs = read_records(tmp_path / "ds", strict=False)
    assert [r.key for r in inputs.records] == ["a"]
    assert [p.where for p in inputs.problems] == ["row 1", "row 2"]
    assert "missing or empty 'question'" in str(inputs.problems[0]) and "duplicate id 'a'" in str(inputs.problems[1])
    with pytest.raises(InputError, match="row 1"):
        read_records(tmp_path / "ds", strict=True)


@pytest.mark.parametrize("field", ["thinking", "reasoning_content"])
def test_answer_and_thinking_come_from_messages(tmp_path, field):
    rows = [{"id": "m1", "messages": [{"role": "system", "content": "Be kind."}, {"role": "user", "content": "Q?"},
                                      {"role": "assistant", "content": "The answer.", field: "I think so."}]},
            {"id": "m2", "question": "Own question", "messages": [{"role": "user", "content": "ignored"},
                                                                  {"role": "assistant", "content": "A2"}]},
            {"id": "m3", "question": "q3", "messages": [{"role": "user", "content": "no answer"}]}]
    path = tmp_path / "x.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    inputs = read_records(path, strict=False)
    a, b = inputs.records
    assert (a.question, a.answer, a.meta["original_thinking"]) == ("Q?", "The answer.", "I think so.")
    assert (b.question, b.answer, "original_thinking" in b.meta) == ("Own question", "A2", False)
    [problem] = inputs.problems
    assert "'messages' ending in an assistant turn" in str(problem)


def test_an_answer_field_wins_over_messages(tmp_path):
    path = tmp_path / "x.jsonl"
    path.write_text(json.dumps({"question": "q", "solution": "S", "messages": [{"role": "assistant",
                                                                               "content": "M"}]}) + "\n")
    [r] = read_records(path).records
    assert r.answer == "S"


def test_a_dataset_without_the_package_says_how_to_install_it(tmp_path, monkeypatch):
    import builtins

    real = builtins.__import__
    monkeypatch.setattr(builtins, "__import__", lambda name, *a, **k: (_ for _ in ()).throw(ImportError())
                        if name == "datasets" else real(name, *a, **k))
    with pytest.raises(InputError, match=r"pip install 'reer\[hf\]'"):
        read_records("hf:org/name")
