"""The store failing, as a user meets it: one line naming the database, exit 2, nothing asked of
the endpoint when the database cannot even open, and a full disk mid-run that loses nothing
stored and resumes once there is room."""

import socket
import subprocess

import pytest

from store import Store
from tests.support import runner as R
from tests.support.disk import can_mount, fill, read_only, tmpfs
from tests.support.fake_openai import FakeOpenAI
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
    # the resumed run asked only for what was not stored: as many new outputs as new nodes
    assert sum(r.n for r in resumed) == nodes_after - nodes_before


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
