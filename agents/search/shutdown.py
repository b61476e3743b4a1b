"""Ctrl-C and SIGTERM during a run: stop taking records, let those in flight finish, then cancel."""

from __future__ import annotations

import asyncio
import signal
import threading
from typing import Collection

from agents.watch.dashboard import Display
from agents.watch.stats import Stats


class Shutdown:
    """Ctrl-C / SIGTERM: the first stops new work and lets in-flight records finish for up to
    ``grace_s``; the second (or the end of the grace period) cancels them. Every store write is
    a complete transaction, so cancelling at any await loses nothing."""

    def __init__(self, grace_s: float, display: Display, stats: Stats):
        self.grace_s, self.display, self.stats = grace_s, display, stats
        self.requested = False
        self.tasks: Collection[asyncio.Task] = ()
        self.main: asyncio.Task | None = None
        self._signals = 0

    def install(self) -> None:
        """Ctrl-C and SIGTERM stop the run. Off the main thread (a Ray actor's event loop) signals
        are not ours to take: the actor calls ``request`` instead."""
        loop = asyncio.get_running_loop()
        self.main = asyncio.current_task()
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.add_signal_handler(sig, self.request)

    def request(self) -> None:
        """A stop, as Ctrl-C asks for it: the first winds down, the second stops at once."""
        self._signals += 1
        if not self.tasks or self._signals > 1:
            self.requested = True
            self.stats.phase = "stopping"
            self._cancel_all()
            return
        self.wind_down("Progress is saved either way.")

    def wind_down(self, why: str) -> None:
        """Take no new records; give those in flight ``grace_s`` to finish, then cancel them."""
        if self.requested:
            return
        self.requested = True
        self.stats.phase = "stopping"
        self.display.log(f"stopping: no new records; in-flight ones get {self.grace_s:.0f} s to finish "
                         f"(Ctrl-C again to stop now). {why}")
        asyncio.get_running_loop().call_later(self.grace_s, self._cancel_all)

    def stop_now(self) -> None:
        """An error no record survives (the store cannot be written, the endpoint is gone): stop
        every other record at once, so that no more generations are paid for that could be lost."""
        self.requested = True
        self._cancel_all()

    def _cancel_all(self) -> None:
        pending = [t for t in self.tasks if not t.done() and t is not asyncio.current_task()]
        for t in pending:
            t.cancel()
        if not self.tasks and self.main is not None:
            self.main.cancel()  # still starting up: nothing to finish
