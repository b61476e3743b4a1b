"""Reading a large run: export streams the store a chunk at a time, and status and show answer
from indexes (the plans are checked, not timed: bench/deepwriting.py times them)."""

import json
import tracemalloc

import pyarrow.parquet as pq
import pytest
from sqlalchemy import event

from agents.inspect import export, report, status, writers
from agents.inspect.curation import Filters
from store import reading
from tests.support.shaped import shaped_run


def _record_pages(st) -> list[str]:
    """The statements that read a page of records, as they run."""
    seen: list[str] = []

    @event.listens_for(st.engine, "before_cursor_execute")
    def note(conn, cursor, statement, params, context, executemany):
        if statement.lstrip().upper().startswith("SELECT") and "FROM record" in statement and "LIMIT" in statement:
            seen.append(statement)

    return seen


def test_export_reads_two_records_at_a_time_and_writes_each_before_reading_on(db, tmp_path, monkeypatch):
    st, run = shaped_run(db, records=10, steps=2)  # 7 done
    monkeypatch.setattr(reading, "FINISHED_CHUNK", 2)
    pages = _record_pages(st)
    read_before: list[int] = []
    dropped = {}
    rows = export.export_rows(st, run, Filters(), dropped=dropped)
    noted = ({**row, "pages_read": read_before.append(len(pages))} for row in rows)
    assert writers.write_rows(noted, tmp_path / "x.jsonl", "jsonl") == 7
    assert read_before == [1, 1, 2, 2, 3, 3, 4]  # row i written after page i // 2: never all read first
    assert len(pages) == 5  # four pages, then the empty one that ends it
    lines = [json.loads(x) for x in (tmp_path / "x.jsonl").read_text().splitlines()]
    assert [x["id"] for x in lines] == [f"r{i}" for i in range(7)]
    assert lines[0]["source"] == "s0" and lines[0]["steps"] == 2 and lines[0]["accepted_steps"] == 1


def test_parquet_is_written_a_row_group_at_a_time(tmp_path, monkeypatch):
    st, run = shaped_run(str(tmp_path / "x.db"), records=8, steps=2)
    monkeypatch.setattr(writers, "ROW_GROUP", 2)
    monkeypatch.setattr(reading, "FINISHED_CHUNK", 2)
    assert export.main(["--db", str(tmp_path / "x.db"), "--out", str(tmp_path / "x.parquet"), "--lang", "en"]) == 0
    assert export.main(["--db", str(tmp_path / "x.db"), "--out", str(tmp_path / "x.jsonl")]) == 0
    f = pq.ParquetFile(tmp_path / "x.parquet")
    assert f.metadata.num_row_groups == 3  # 5 done rows in groups of 2
    jsonl = [json.loads(x) for x in (tmp_path / "x.jsonl").read_text().splitlines()]
    assert f.read().to_pylist() == jsonl


def test_parquet_refuses_a_row_group_that_does_not_fit_the_first(tmp_path, monkeypatch):
    monkeypatch.setattr(writers, "ROW_GROUP", 1)
    rows = [{"id": "a", "x": 1}, {"id": "b", "x": "text"}]
    with pytest.raises(writers.ExportError, match="mixed types"):
        writers.write_rows(iter(rows), tmp_path / "x.parquet", "parquet")
    assert list(tmp_path.iterdir()) == []  # no file, no temporary left


def test_exporting_holds_a_chunk_not_the_run(tmp_path):
    """300 records of 60,000 characters of thinking each (18 MB of text, 36 MB in Python's
    strings and JSON): an export that held every row would pass the bound many times over."""
    st, run = shaped_run(str(tmp_path / "x.db"), records=300, steps=2, draft_chars=30_000)
    tracemalloc.start()
    try:
        n = writers.write_rows(export.export_rows(st, run), tmp_path / "x.jsonl", "jsonl")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert n == 297 and (tmp_path / "x.jsonl").stat().st_size > 300 * 60_000 * 0.9
    assert peak < 12e6, f"{peak / 1e6:.1f} MB"


def test_status_and_the_report_count_what_is_stored(db):
    st, run = shaped_run(db, records=12, steps=10)
    snap = status.snapshot(st, run)
    assert snap["records"] == {"total": 12, "pending": 0, "running": 1, "done": 9, "failed": 1, "skipped": 1,
                               "removed": 0}
    assert (snap["steps"], snap["accepted_steps"]) == (90, 45)
    assert snap["generations"] == {"stored": 11 + 180, "rejected": 9 * 3}
    assert snap["tokens"]["prompt"] == 11 * 900 + 180 * 1200 // 2
    assert [g["reason"] for g in snap["problems"]] == ["failed: N requests failed for good; last: HTTP N",
                                                       "skipped: draft thinking is a single segment"]
    data = report.gather(st, run)
    assert [r["key"] for r in data["records"]] == [f"r{i}" for i in range(9)]
    assert data["records"][0] == {"key": "r0", "initial": 1.5, "final": 1.45, "draft_chars": 3000,
                                  "final_chars": 3000, "tokens": 750 + 20 * 300, "seconds": 22.0}
    assert list(data["by_step"]) == list(range(10)) and len(data["by_step"][0]) == 9
    assert sum(a for _, a in data["by_step"][1]) == 9


def _plans(st, call) -> list[str]:
    """SQLite's plan of every SELECT ``call`` runs."""
    seen = []

    @event.listens_for(st.engine, "before_cursor_execute")
    def note(conn, cursor, statement, params, context, executemany):
        if statement.lstrip().upper().startswith("SELECT"):
            seen.append((statement, params))

    call()
    event.remove(st.engine, "before_cursor_execute", note)
    with st.engine.connect() as c:
        return [" | ".join(r[-1] for r in c.exec_driver_sql("EXPLAIN QUERY PLAN " + sql, params)) + "  <- " + sql
                for sql, params in seen]


def test_status_reads_indexes_and_no_row_with_texts(tmp_path):
    """A scan of record, node or step reads every long text on SQLite: status must read covering
    indexes only, and each one is named. It reads no node and no step: the records count them."""
    st, run = shaped_run(str(tmp_path / "x.db"), records=12, steps=3)  # no ANALYZE: reer never runs it
    plans = _plans(st, lambda: status.snapshot(st, run))
    joined = "\n".join(plans)
    for index in ("ix_record_run_status", "ix_record_worker_status"):
        assert f"COVERING INDEX {index}" in joined, joined
    assert not [p for p in plans if " node" in p.split("  <- ")[0] or " step" in p.split("  <- ")[0]], joined
    for plan in plans:
        for part in plan.split("  <- ")[0].split(" | "):
            if any(f"{verb} {t}" in part for verb in ("SCAN", "SEARCH") for t in ("record", "node", "step")):
                # The records without a result are found in the index, then read (their error)
                found = "record.error" in plan and part.startswith("SEARCH record USING INDEX")
                assert "COVERING INDEX" in part or "PRIMARY KEY" in part or found, plan


def test_show_finds_its_record_and_tree_by_index(tmp_path):
    st, run = shaped_run(str(tmp_path / "x.db"), records=12, steps=3)
    plans = _plans(st, lambda: st.load_progress(st.record_by_key(run, "r5").id))
    assert len(plans) == 3 and not [p for p in plans if "SCAN" in p.split("  <- ")[0]], plans


def test_the_records_counters_follow_every_write_of_their_trees(tmp_path):
    """Status sums the records' counters: each write that adds to a tree counts once, a retried
    rejection included, and a restarted record counts from nothing."""
    from store import Node, NodeKind, RecordIn

    st, run = shaped_run(str(tmp_path / "x.db"), records=4, steps=2)  # the last one: still running
    rec = st.record_by_key(run, "r3")
    before = status.snapshot(st, run)
    [n] = st.add_nodes([Node(record_id=rec.id, kind=NodeKind.draft, step=-1, idx=0, text="d", raw="d",
                             prompt_tokens=7, completion_tokens=3)])
    st.reject_node(n, "cut off")
    st.reject_node(n, "cut off")  # a retry after a lost connection
    restored = Node(record_id=rec.id, kind=NodeKind.candidate, step=0, idx=0, text="c", raw="c", completion_tokens=5)
    assert st.restore_nodes([restored], st.worker_id) == 1
    after = status.snapshot(st, run)
    assert after["generations"] == {"stored": before["generations"]["stored"] + 2,
                                    "rejected": before["generations"]["rejected"] + 1}
    assert after["tokens"] == {"prompt": before["tokens"]["prompt"] + 7,
                               "completion": before["tokens"]["completion"] + 8}
    st.begin_run({"search": {"max_steps": 2}, "generator_model": "fake"}, "in.jsonl",
                 [RecordIn(key=f"r{i}", position=i, question=f"Write piece {i}.", answer="changed", lang="en")
                  for i in range(4)], force=True, alone=True)  # every record's input changed: all start again
    assert status.snapshot(st, run)["generations"] == {"stored": 0, "rejected": 0}


def test_an_hf_dataset_is_written_a_batch_at_a_time_in_shards_that_load_from_disk(tmp_path, monkeypatch):
    """Batches of two rows, a shard each: datasets.load_from_disk reads back the rows the JSONL
    export writes, from the layout save_to_disk would have made."""
    datasets = pytest.importorskip("datasets")
    from agents.inspect import hf

    db = str(tmp_path / "x.db")
    shaped_run(db, records=8, steps=2)
    monkeypatch.setattr(writers, "ROW_GROUP", 2)
    monkeypatch.setattr(reading, "FINISHED_CHUNK", 2)
    monkeypatch.setattr(hf, "SHARD_BYTES", 1)
    assert export.main(["--db", db, "--out", str(tmp_path / "ds"), "--format", "hf"]) == 0
    assert export.main(["--db", db, "--out", str(tmp_path / "x.jsonl")]) == 0
    shards = sorted(p.name for p in (tmp_path / "ds").glob("*.arrow"))
    assert shards == [f"data-0000{i}-of-00003.arrow" for i in range(3)]  # 5 done rows, two a shard
    jsonl = [json.loads(x) for x in (tmp_path / "x.jsonl").read_text().splitlines()]
    assert datasets.load_from_disk(str(tmp_path / "ds")).to_list() == jsonl
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def test_an_hf_dataset_of_no_rows_and_one_of_mixed_types(tmp_path, monkeypatch):
    datasets = pytest.importorskip("datasets")
    from agents.inspect import hf

    assert hf.write_dataset(iter([]), tmp_path / "empty") == 0
    assert len(datasets.load_from_disk(str(tmp_path / "empty"))) == 0
    monkeypatch.setattr(writers, "ROW_GROUP", 1)
    with pytest.raises(writers.ExportError, match="mixed types"):
        writers.write_rows(iter([{"id": "a", "x": 1}, {"id": "b", "x": "text"}]), tmp_path / "ds", "hf")
    assert [p.name for p in tmp_path.iterdir()] == ["empty"]  # no folder, no temporary left


_PEAK = """
import sys
from agents.inspect import export, writers
from store import reading
import datasets, pyarrow  # loaded before the baseline
writers.ROW_GROUP = reading.FINISHED_CHUNK = 8  # both sizes are many batches
def hwm():
    return int([x for x in open('/proc/self/status') if x.startswith('VmHWM:')][0].split()[1]) // 1024
base = hwm()
assert export.main(['--db', sys.argv[1], '--out', sys.argv[2], '--format', 'hf']) == 0
print(hwm() - base)
"""


def test_an_hf_export_peaks_the_same_for_eight_times_the_records(tmp_path):
    """Resident memory, in a process of its own: 60 and 480 DeepWriting-size records (a 30,000
    character thinking; ~30 MB of row text more). An export that held or mapped what it wrote
    (datasets' save_to_disk of a built dataset maps it whole) peaks ~60 MB higher for the larger."""
    pytest.importorskip("datasets")
    import subprocess
    import sys

    peaks = []
    for n in (60, 480):
        db = str(tmp_path / f"{n}.db")
        shaped_run(db, records=n, steps=1, draft_chars=30_000).__getitem__(0).close()
        out = subprocess.run([sys.executable, "-c", _PEAK, db, str(tmp_path / f"ds{n}")], capture_output=True,
                             text=True, check=True).stdout
        peaks.append(int(out.split()[-1]))
    assert peaks[1] - peaks[0] < 25, peaks  # here: 0; datasets.save_to_disk: 77 MB


def test_the_unfinished_are_counted_from_the_queue_index(tmp_path):
    st, run = shaped_run(str(tmp_path / "x.db"), records=12, steps=3)  # one still running
    st.begin_run({"search": {"max_steps": 3}, "generator_model": "fake"}, "in.jsonl", [], force=True, alone=True)
    assert st.unfinished_count(run) == 0  # every record removed from the input
    st, run = shaped_run(str(tmp_path / "y.db"), records=12, steps=3)
    assert st.unfinished_count(run) == len(st.records_to_run(run)) == 1
    plans = _plans(st, lambda: st.unfinished_count(run))
    assert len(plans) == 1 and "COVERING INDEX ix_record_run_status (run_id=? AND status=?)" in plans[0], plans
