"""A child service's lifetime: exit when the parent dies.

Used by the scorer process and the embedded endpoint, each started by ``agents.run``.
"""

from __future__ import annotations

import os
import threading
import time


def exit_with_parent(interval_s: float = 1.0) -> None:
    """In the child: exit when the process that started us dies (even by SIGKILL). An orphaned
    scorer or llama.cpp server would hold the model's memory forever."""
    parent = os.getppid()

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(interval_s)
        os._exit(0)

    threading.Thread(target=watch, daemon=True).start()
