"""Running ``python -m agents.run`` as a real subprocess, as a user would."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

RECORDS = [
    {"id": "sea", "question": "Write a short poem about the sea at dawn.",
     "solution": "The sea at dawn is a held breath,\nsilver on silver, waiting.\n\n"
                 "Then the gulls come, and the boats, and the long day opens like a door, "
                 "and the light walks across the water to the shore where I stand."},
    {"id": "shop", "question": "Write a two-sentence advert for a small bakery.",
     "solution": "Warm bread at six, cinnamon by seven: the corner bakery wakes before you do.\n\n"
                 "Come in for one loaf and leave with a habit, because mornings taste better when "
                 "somebody kneaded them for you by hand."},
    {"id": "autumn", "question": "写一首关于秋天的短诗。",
     "solution": "落叶铺满小路，风把夏天轻轻收起。\n\n我站在门口，看一只雁飞过远山，天空忽然变得很高，很安静，像一封没有写完的信。"},
    {"id": "essay", "question": "Write a short paragraph on why libraries matter.",
     "solution": "Libraries are the last public rooms where nobody asks you to buy anything.\n\n"
                 "They keep the record of what we thought, lend it freely, and give every child the same "
                 "shelf to climb, which is as close to fairness as most towns ever come."},
]


def write_input(path: Path, records=RECORDS) -> Path:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records), encoding="utf-8")
    return path


def run_cmd(endpoint: str, inp: Path, db: Path, out: Path, scorer_model: Path | str, *extra: str) -> list[str]:
    return [sys.executable, "-m", "agents.run", "--endpoint", endpoint, "--input", str(inp), "--db", str(db),
            "--out", str(out), "--scorer-model", str(scorer_model), "--scorer-threads", "1", "--no-dashboard",
            "--seed", "0", *extra]


MARK = "REER_TEST_MARK"  # in the environment of a run and so of every process it starts


def env(mark: str | None) -> dict[str, str]:
    e = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    if mark:
        e[MARK] = mark
    return e


def run(cmd: list[str], timeout: float = 300, mark: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, cwd=ROOT, env=env(mark), capture_output=True, text=True, timeout=timeout)


def start(cmd: list[str], mark: str | None = None) -> subprocess.Popen:
    return subprocess.Popen(cmd, cwd=ROOT, env=env(mark), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def marked(mark: str) -> list[int]:
    """Processes started by a run with this mark (the run itself, its scorer, its endpoint)."""
    needle = f"{MARK}={mark}".encode()
    out = []
    for p in Path("/proc").iterdir():
        if p.name.isdigit():
            try:
                if needle in (p / "environ").read_bytes().split(b"\0"):
                    out.append(int(p.name))
            except OSError:
                pass
    return out


def none_left(mark: str, timeout: float = 15) -> bool:
    return wait_for(lambda: not marked(mark), timeout)


def query(db: Path, sql: str) -> list[tuple]:
    con = sqlite3.connect(db, timeout=30)
    try:
        return con.execute(sql).fetchall()
    finally:
        con.close()


def wait_for(predicate, timeout: float, interval: float = 0.1) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if predicate():
                return True
        except sqlite3.Error:
            pass
        time.sleep(interval)
    return False


def kill(proc: subprocess.Popen) -> None:
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def pids_with(fragment: str) -> list[int]:
    out = []
    for p in Path("/proc").iterdir():
        if p.name.isdigit():
            try:
                if fragment in (p / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace"):
                    out.append(int(p.name))
            except OSError:
                pass
    return out


def parent_pid(pid: int) -> int | None:
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
    except (OSError, IndexError, ValueError):
        return None
