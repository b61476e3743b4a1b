"""The fleet on a real local Ray cluster (``ray start --head`` on loopback, with a declared
logical GPU so that the scorer actors' ``num_gpus=1`` schedules on this CPU box): the tiny
scorer model on CPU, the fake generator over loopback HTTP, a PostgreSQL store. A worker
actor or a scorer actor killed with SIGKILL is restarted by Ray and the run completes with
every record once; Ctrl-C on the driver stops it and the same command resumes."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time

import pytest

from tests.integration.test_faults import many_records
from tests.support import runner as R
from tests.support.fake_openai import FakeOpenAI
from tests.support.pg import count, pg_schema, q

ray = pytest.importorskip("ray")
N = 16
DEAD = "http://127.0.0.1:9/v1"  # an endpoint dead from the start: refused at once


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """One Ray head for the module's tests, as a user starts one; stopped at the end."""
    ray_bin = shutil.which("ray", path=os.path.dirname(sys.executable))
    port = _free_port()
    temp = tmp_path_factory.mktemp("ray")
    # a cluster on loopback for one test module: Ray's token authentication is for clusters others reach
    env = {**R.env(None), "RAY_USAGE_STATS_ENABLED": "0", "RAY_AUTH_MODE": "disabled"}
    start = subprocess.run([ray_bin, "start", "--head", "--node-ip-address", "127.0.0.1", "--port", str(port),
                            "--num-cpus", "8", "--num-gpus", "1", "--object-store-memory", "200000000",
                            "--include-dashboard", "false", "--temp-dir", str(temp), "--disable-usage-stats"],
                           env=env, capture_output=True, text=True, timeout=180)
    assert start.returncode == 0, start.stdout + start.stderr
    try:
        yield f"127.0.0.1:{port}"
    finally:
        subprocess.run([ray_bin, "stop", "--force"], env=env, capture_output=True, timeout=120)


@pytest.fixture
def url():
    with pg_schema("ray") as u:
        yield u


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Driver:
    """``reer run --ray`` as a process whose output lines are read as they come."""

    def __init__(self, cmd: list[str]):
        self.proc = R.start(cmd)
        self.lines: list[str] = []
        self.err: list[str] = []
        threading.Thread(target=self._read, args=(self.proc.stdout, self.lines), daemon=True).start()
        threading.Thread(target=self._read, args=(self.proc.stderr, self.err), daemon=True).start()

    @staticmethod
    def _read(stream, into: list[str]) -> None:
        for line in stream:
            into.append(line)

    def pid_of(self, name: str, timeout: float = 180) -> int:
        found: list[int] = []

        def said() -> bool:
            found[:] = [int(m.group(1)) for line in self.lines if (m := re.match(rf"{name}: pid (\d+) on ", line))]
            return bool(found)

        assert R.wait_for(said, timeout=timeout), self.text()
        return found[0]

    def wait(self, timeout: float = 400) -> int:
        code = self.proc.wait(timeout=timeout)
        time.sleep(0.2)  # the readers take the last lines
        return code

    def text(self) -> str:
        return "".join(self.lines) + "".join(self.err)


def cmd(cluster, fake, inp, db, out, scorer_model, *extra) -> list[str]:
    return R.run_cmd(fake.url, inp, db, out, scorer_model, "--ray", cluster, "--endpoint", DEAD,
                     "--max-steps", "2", "--concurrency", "4", "--lease-s", "3", *extra)


def test_a_fleet_on_ray_survives_a_killed_worker_and_a_killed_scorer_each_record_once(
        tmp_path, cluster, url, tiny_model_dirs):
    inp = R.write_input(tmp_path / "in.jsonl", many_records(N))
    out = tmp_path / "out.jsonl"
    with FakeOpenAI(delay_s=1.0) as fake:
        driver = Driver(cmd(cluster, fake, inp, url, out, tiny_model_dirs["llama"], "--ray-workers", "2"))
        worker, scorer = driver.pid_of("worker 0"), driver.pid_of("scorer 0")
        assert R.wait_for(lambda: count(url, "step") >= 2, timeout=300), driver.text()
        os.kill(worker, signal.SIGKILL)
        [victim] = q(url, "select id from worker where ended_at is null order by id limit 1")[0]
        assert R.wait_for(lambda: "worker 0: restarted by Ray" in driver.text(), timeout=120), driver.text()
        os.kill(scorer, signal.SIGKILL)
        code = driver.wait()
        generated = fake.choices_generated("draft") + fake.choices_generated("edit")
    text = driver.text()
    assert code == 0, text
    assert "scorer 0: restarted by Ray" in text or "SCORERS DOWN" in text, text
    assert "has not answered its preflight; the run starts without it" in text  # the dead endpoint held nothing
    assert q(url, "select status, count(*) from record group by status") == [("done", N)]
    assert q(url, "select count(*) from (select record_id from node where kind = 'draft' group by record_id "
                  "having count(*) > 1) twice") == [(0,)], "a record was drafted twice"
    assert sorted(r["id"] for r in R.read_jsonl(out)) == sorted(f"r{i}" for i in range(N))  # the whole run
    stored = q(url, "select count(*) from node")[0][0]
    # what the killed worker had in flight (4 records, 2 choices each at most) is all that was lost
    assert generated - stored <= 4 * 2, (generated, stored, victim)


def test_ctrl_c_on_the_driver_stops_the_fleet_and_the_same_command_resumes(tmp_path, cluster, url, tiny_model_dirs):
    inp = R.write_input(tmp_path / "in.jsonl", many_records(N))
    out = tmp_path / "out.jsonl"
    with FakeOpenAI(delay_s=0.4) as fake:
        run = cmd(cluster, fake, inp, url, out, tiny_model_dirs["llama"], "--grace-s", "5")
        first = Driver(run)
        first.pid_of("worker 0")
        assert R.wait_for(lambda: count(url, "step") >= 2, timeout=300), first.text()
        first.proc.send_signal(signal.SIGINT)
        assert first.wait(timeout=120) == 130, first.text()
        assert "reer: interrupted; progress is saved, run the same command to resume" in first.text()
        done_before = q(url, "select count(*) from record where status = 'done'")[0][0]
        assert done_before < N
        again = Driver(run)
        assert again.wait() == 0, again.text()
    assert q(url, "select status, count(*) from record group by status") == [("done", N)]
    assert "resumed run in" in again.text()
    assert len(R.read_jsonl(out)) == N


def test_a_sqlite_db_with_several_ray_workers_is_refused_in_one_line(tmp_path):
    inp = R.write_input(tmp_path / "in.jsonl", many_records(2))
    p = R.run(R.run_cmd("http://127.0.0.1:9/v1", inp, tmp_path / "run.db", tmp_path / "out.jsonl", "fake",
                        "--ray", "127.0.0.1:9", "--ray-workers", "2"))
    assert p.returncode == 2
    assert p.stderr.strip().startswith("reer: error: --ray with a SQLite --db"), p.stderr
    assert not (tmp_path / "run.db").exists()
