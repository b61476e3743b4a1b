"""The run's log file beside its database (``<db>.run.log``): every line the run shows and every
error in full, each with a UTC time and a level; one JSON object a line with ``--log-json``.

The file is for after the fact (what were those 7 errors?), so it never stops a run: if it
cannot be written (a full disk, a read-only folder), lines are dropped and the store, which
matters, reports the cause.
"""

from __future__ import annotations

import contextlib
import json
from datetime import datetime, timezone
from pathlib import Path


class RunLog:
    def __init__(self, path: Path, json_lines: bool = False):
        self.path, self.json_lines = path, json_lines
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            # Unbuffered: each line is one write that lands or fails at once, so nothing is left
            # in a buffer to fail again at close (a full disk would otherwise crash the exit).
            self._file = path.open("ab", buffering=0)
        except OSError:
            self._file = None

    def write(self, level: str, message: str) -> None:
        if self._file is None:
            return
        ts = datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")
        if self.json_lines:
            line = json.dumps({"ts": ts, "level": level, "message": message}, ensure_ascii=False)
        else:
            line = f"{ts} {level:<5} " + message.replace("\n", "\n    ")
        try:
            self._file.write((line + "\n").encode("utf-8", "backslashreplace"))
        except OSError:
            pass

    def close(self) -> None:
        if self._file is not None:
            with contextlib.suppress(OSError):
                self._file.close()
            self._file = None
