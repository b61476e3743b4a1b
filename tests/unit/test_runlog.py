"""The run's log file: timed, levelled lines (or JSON lines), and never a reason for a run to fail."""

import json
import re
from pathlib import Path

from agents.watch.runlog import RunLog


def test_lines_are_timed_and_levelled(tmp_path):
    log = RunLog(tmp_path / "a" / "run.log")
    log.write("ERROR", "HTTP 503\nsecond line")
    log.close()
    text = (tmp_path / "a" / "run.log").read_text()
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z ERROR HTTP 503\n    second line\n", text), text
    log = RunLog(tmp_path / "j.log", json_lines=True)
    log.write("INFO", "wrote 3 records")
    log.close()
    entry = json.loads((tmp_path / "j.log").read_text())
    assert entry["level"] == "INFO" and entry["message"] == "wrote 3 records" and entry["ts"].endswith("Z")


def test_a_log_that_cannot_be_written_is_dropped_quietly():
    log = RunLog(Path("/dev/full"))  # every write: ENOSPC, as on a full disk
    log.write("ERROR", "short")
    log.write("ERROR", "x" * 100_000)
    log.close()
    RunLog(Path("/proc/no/such/run.log")).write("INFO", "a folder that cannot be made")
