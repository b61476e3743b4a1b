"""The store failing, as a user meets it: one line naming the database, exit 2, nothing asked of
the endpoint when the database cannot even open, and a full disk or a file made unwritable
mid-run, which lose nothing stored and resume once the cause is mended."""

import re
import socket
import subprocess
import tempfile
from pathlib import Path

import pytest

from store import Store
from tests.integration.test_faults import many_records
from tests.support import runner as R
from tests.support.disk import can_make_immutable, can_mount, fill, immutable, read_only, tmpfs
from tests.support.fake_openai import FakeOpenAI
from tests.support.fake_scorer import FakeScorer
from tests.support.pg import PG_URL
from tests.support.pg import pg_available as _pg_available


def refused_at_open(tmp_path, tiny_model_dirs, db: str) -> subprocess.CompletedProcess:
    inp = R.write_input(tmp_path / "in.jsonl")
    with FakeOpenAI() as fake:
        p = R.run(R.run_cmd(fake.url, inp, db, tmp_path / "out.jsonl", tiny_model_dirs["llama"]), timeout=120)
        asked = list(fake.log)
    assert p.returncode == 2, p.stdout + p.stderr
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("reer: error: database "), p.stderr
    assert "Traceback" not in p.stdout + p.stderr
    assert not asked, "the endpoint was asked before the database was known to work"
    return p


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_a_folder_as_db(tmp_path, tiny_model_dirs):
    p = refused_at_open(tmp_path, tiny_model_dirs, str(tmp_path))
    assert f"database {tmp_path}: it is a folder" in p.stderr and "give a file path" in p.stderr


def test_postgres_refused_or_missing_names_it_without_the_password(tmp_path, tiny_model_dirs):
    p = refused_at_open(tmp_path, tiny_model_dirs, f"postgresql+psycopg://postgres:s3cret@127.0.0.1:{closed_port()}/test")
    assert "postgres:***@127.0.0.1" in p.stderr and "Connection refused" in p.stderr and "s3cret" not in p.stderr
    if not _pg_available():
        pytest.skip("PostgreSQL is not running on 127.0.0.1:5432")
    missing = PG_URL.replace("postgres@", "postgres:s3cret@").rsplit("/", 1)[0] + "/reer_missing"
    p = refused_at_open(tmp_path, tiny_model_dirs, missing)
    assert 'database "reer_missing" does not exist' in p.stderr and "createdb" in p.stderr
    assert "s3cret" not in p.stderr


def test_an_unknown_dialect(tmp_path, tiny_model_dirs):
    p = refused_at_open(tmp_path, tiny_model_dirs, "nosuchdb://u@h/x")
    assert "not a database URL reer can use" in p.stderr


needs_mount = pytest.mark.skipif(not can_mount(), reason="cannot mount here (not root)")


@needs_mount
def test_a_read_only_folder_or_wal(tmp_path, tiny_model_dirs):
    (tmp_path / "ro").mkdir()
    with read_only(tmp_path / "ro"):
        p = refused_at_open(tmp_path, tiny_model_dirs, str(tmp_path / "ro" / "run.db"))
    assert "cannot be written (Read-only file system)" in p.stderr
    # a database whose -wal and -shm cannot be written: refused at open, not a crash mid-run
    (tmp_path / "rw").mkdir()
    for name in ("run.db", "run.db-wal", "run.db-shm"):
        (tmp_path / "rw" / name).touch()
    with read_only(tmp_path / "rw" / "run.db-wal"), read_only(tmp_path / "rw" / "run.db-shm"):
        p = refused_at_open(tmp_path, tiny_model_dirs, str(tmp_path / "rw" / "run.db"))
    assert "run.db-wal cannot be written" in p.stderr


@needs_mount
def test_a_full_disk_before_start(tmp_path, tiny_model_dirs):
    with tmpfs(tmp_path / "fs", "4m") as fs:
        fill(fs)
        p = refused_at_open(tmp_path, tiny_model_dirs, str(fs / "run.db"))
    assert "its file system is full (0 KiB free)" in p.stderr and "free space" in p.stderr


@needs_mount
def test_a_disk_filling_mid_run_stops_it_and_the_run_resumes_after(tmp_path, tiny_model_dirs):
    inp = R.write_input(tmp_path / "in.jsonl")
    out = tmp_path / "out.jsonl"
    with tmpfs(tmp_path / "fs", "16m") as fs, FakeOpenAI(delay_s=0.15) as fake:
        db = fs / "run.db"
        cmd = R.run_cmd(fake.url, inp, db, out, tiny_model_dirs["gemma3"], "--max-steps", "4", "--concurrency", "2")
        proc = R.start(cmd, mark="diskfull")
        assert R.wait_for(lambda: R.query(db, "select count(*) from step")[0][0] >= 2, timeout=240), \
            proc.stderr.read() if proc.poll() is not None else "no steps in time"
        filler = fill(fs)
        stdout, stderr = proc.communicate(timeout=240)
        assert proc.returncode == 2, stdout + stderr
        assert R.none_left("diskfull"), "the scorer outlived its parent"
        lines = stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith(f"reer: error: database {db}: "), stderr
        assert ("disk is full" in lines[0] or "disk I/O error" in lines[0]) and "free space" in lines[0], lines[0]
        assert "Traceback" not in stdout + stderr
        assert R.wait_for(lambda: fake.busy == 0, timeout=10)
        # every step landed whole: a record's progress counter matches its stored steps
        assert R.query(db, "select count(*) from record r where r.steps_done != "
                           "(select count(*) from step s where s.record_id = r.id)") == [(0,)]
        nodes_before = R.query(db, "select count(*) from node")[0][0]
        log_before = len(fake.log)

        filler.unlink()
        p = R.run(cmd)
        assert p.returncode == 0, p.stdout + p.stderr
        assert "resumed run" in p.stdout
        nodes_after = R.query(db, "select count(*) from node")[0][0]
        resumed = [r for r in fake.log[log_before:] if r.kind != "other"]
    assert [r["id"] for r in R.read_jsonl(out)] == ["sea", "shop", "autumn", "essay"]
    # the full disk rarely has room for the spill file; what it kept was stored without asking
    kept = re.search(r"recovered (\d+) generations", p.stdout)
    # the resumed run asked only for what was not stored: as many new outputs as new nodes
    assert sum(r.n for r in resumed) == nodes_after - nodes_before - (int(kept.group(1)) if kept else 0)


@pytest.mark.skipif(not can_make_immutable(Path(tempfile.gettempdir())),
                    reason="chattr +i does not stop writes to open files here (not root, or not ext4)")
def test_a_file_made_unwritable_mid_run_stops_at_once_keeping_what_it_could_not_store(tmp_path):
    """Not a failure to wait out: one line naming the file, exit 2, at once. The generations the
    failed writes carried go to the spill file (the folder is still writable), and the same
    command, once the file is writable, stores them and asks the endpoint for none of them."""
    n = 8
    inp = R.write_input(tmp_path / "in.jsonl", many_records(n))
    db, out = tmp_path / "run.db", tmp_path / "out.jsonl"
    with FakeScorer() as scorer, FakeOpenAI(delay_s=0.2) as fake:
        # no heartbeat within the test: the first write to fail is one that carries generations
        cmd = R.run_cmd(fake.url, inp, db, out, "fake", "--scorer-url", scorer.url, "--max-steps", "2",
                        "--concurrency", "4", "--lease-s", "600")
        proc = R.start(cmd)
        assert R.wait_for(lambda: R.query(db, "select count(*) from step")[0][0] >= 2, timeout=120), \
            proc.stderr.read() if proc.poll() is not None else "no steps in time"
        fake.hang_after = len(fake.log)  # every record waits on a generation: no write in flight
        assert R.wait_for(lambda: fake.held == 4, timeout=30)
        with immutable(db, Path(f"{db}-wal")):
            fake.answer_again()  # the outputs come back to a file that cannot be written
            stdout, stderr = proc.communicate(timeout=120)
        asked_first = fake.choices_generated("draft") + fake.choices_generated("edit")
        assert proc.returncode == 2, stdout + stderr
        [line] = stderr.strip().splitlines()
        spill = Path(f"{db}.spill.jsonl")
        held = len(spill.read_text().splitlines())
        assert line.startswith(f"reer: error: database {db}: ") and "STORE DOWN" not in stdout, line
        assert "run.db cannot be written (Operation not permitted)" in line, line
        assert "To go on: make the file, its -wal and -shm files and their folder writable" in line, line
        assert f"(the {held} generations it could not store are kept in {spill}: " in line and held > 0, line
        stored = R.query(db, "select count(*) from node")[0][0]
        assert R.query(db, "select count(*) from record r where r.steps_done != "
                           "(select count(*) from step s where s.record_id = r.id)") == [(0,)]

        again = R.run(cmd)
        asked_again = fake.choices_generated("draft") + fake.choices_generated("edit") - asked_first
    assert again.returncode == 0, again.stdout + again.stderr
    assert f"recovered {held} generations held while the store was down, from {spill}" in again.stdout, again.stdout
    assert not spill.exists()
    assert R.query(db, "select status, count(*) from record group by status") == [("done", n)]
    assert R.query(db, "select count(*) from node") == [(n * 5,)]
    # the same command asked only for what was neither stored nor spilled
    assert asked_again == n * 5 - stored - held, (asked_again, stored, held)


def test_a_second_run_on_the_same_database_is_refused_naming_the_first(tmp_path, tiny_model_dirs):
    inp = R.write_input(tmp_path / "in.jsonl", [{**R.RECORDS[i % 4], "id": f"r{i}"} for i in range(12)])
    db, out = tmp_path / "run.db", tmp_path / "out.jsonl"
    with FakeOpenAI(delay_s=0.5) as fake:  # slow enough that the first is still running
        cmd = R.run_cmd(fake.url, inp, db, out, tiny_model_dirs["llama"], "--max-steps", "3", "--concurrency", "1")
        first = R.start(cmd, mark="first")
        try:
            assert R.wait_for(lambda: R.query(db, "select count(*) from node")[0][0] > 0, timeout=120)
            second = R.run(cmd, timeout=120)
            assert second.returncode == 2, second.stdout + second.stderr
            assert second.stderr.strip() == (f"reer: error: database {db} is in use by another reer run (pid "
                                             f"{first.pid} on {socket.gethostname()}): wait for it to end or stop "
                                             "it, or give this run another --db")
        finally:
            R.kill(first)
    Store.hold(str(db)).release()  # a killed run leaves no stale lock (test_resume resumes after a kill)
    assert R.query(db, "select count(*) from run") == [(1,)]
