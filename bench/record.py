"""Run a benchmark and keep its output as a measurement file the docs quote.

    .venv/bin/python bench/record.py NAME -- .venv/bin/python bench/scorer.py --records 1

writes ``bench/results/NAME.json``: the command, the commit (and whether the tree was dirty),
the machine (CPU, cores, memory, GPU), the date, the wall time and every line the benchmark
printed. Figures are read from those lines; nothing is rounded or summarised here.
"""

from __future__ import annotations

import json
import os
import platform
import shlex
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def machine() -> dict:
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor())
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    try:
        gpu = subprocess.run(["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"], capture_output=True,
                             text=True, timeout=10).stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        gpu = None
    return {"cpu": cpu, "cores": len(os.sched_getaffinity(0)), "memory_gib": round(mem, 1), "gpu": gpu,
            "python": platform.python_version()}


def git(*args: str) -> str:
    return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True).stdout.strip()


def main() -> int:
    if len(sys.argv) < 4 or sys.argv[2] != "--":
        print(__doc__, file=sys.stderr)
        return 2
    name, cmd = sys.argv[1], sys.argv[3:]
    t0 = time.monotonic()
    p = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    out = {"command": shlex.join(cmd), "commit": git("rev-parse", "--short", "HEAD"),
           "dirty": bool(git("status", "--porcelain", "--untracked-files=no")),
           "date": datetime.now(timezone.utc).isoformat(timespec="seconds"), "machine": machine(),
           "wall_s": round(time.monotonic() - t0, 1), "exit_code": p.returncode,
           "output": p.stdout.splitlines()}
    path = ROOT / "bench" / "results" / f"{name}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(out, indent=2, ensure_ascii=False) + "\n")
    print("\n".join(out["output"]))
    print(f"-> {path.relative_to(ROOT)}", file=sys.stderr)
    return p.returncode


if __name__ == "__main__":
    sys.exit(main())
