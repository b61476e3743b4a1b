"""The two kinds of Ray actor of a fleet; ``agents.cluster.driver`` starts them with Ray's options
(resources, restarts). Neither keeps anything of the run's progress: the store does, so an
actor Ray restarts (or a lost node) costs at most the requests it had in flight.

A scorer actor serves the scorer server (``scorer.server``) on its node, on its GPU when it has
one, as a child process that dies with it; restarted, it binds the same port again, so the
workers' ``--scorer-url`` for it stays right. A worker actor is one worker of the run
(``agents.worker.work``: claims, leases, heartbeats), stopped cleanly by ``stop``.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

from agents import config as C
from agents.errors import ReerError
from agents.search.shutdown import Shutdown
from agents.services.process import READY_PREFIX, ServiceError, child_env
from agents.watch.dashboard import Display
from agents.watch.runlog import RunLog
from agents.watch.stats import Stats
from agents.worker import EXIT_ERROR, work
from prompts import PromptError
from scorer import ScorerError
from store import StoreError

BIND_TRIES_S = 10.0  # a restarted scorer's old child may hold its port a moment longer


def node_ip() -> str:
    import ray

    return ray.util.get_node_ip_address()


class ScorerActor:
    def __init__(self, settings_json: str, token: str, port: int, log: str):
        self.host, self.log = node_ip(), Path(log)
        self.log.parent.mkdir(parents=True, exist_ok=True)
        deadline = time.monotonic() + BIND_TRIES_S
        while True:
            self.proc, url = self._start(settings_json, token, port)
            if url is not None:
                self._url = url
                return
            if time.monotonic() > deadline:
                raise ServiceError(f"the scorer on {self.host} did not start: see {self.log}")
            time.sleep(0.5)

    def _start(self, settings_json: str, token: str, port: int) -> tuple[subprocess.Popen, str | None]:
        with self.log.open("ab") as log:
            proc = subprocess.Popen(
                # "=": a token may begin with "-"
                [sys.executable, "-m", "scorer.server", f"--settings-json={settings_json}", f"--host={self.host}",
                 f"--port={port}", f"--token={token}", "--exit-with-parent"],
                stdout=subprocess.PIPE, stderr=log, stdin=subprocess.DEVNULL, env=child_env(), text=True)
        assert proc.stdout is not None
        for line in proc.stdout:  # the server says its URL as soon as it listens, before its model loads
            if line.startswith(READY_PREFIX):
                return proc, line.strip().removeprefix(READY_PREFIX)
        proc.wait()
        return proc, None

    def url(self) -> str:
        return self._url

    def where(self) -> tuple[int, str]:
        return os.getpid(), self.host


class WorkerActor:
    def __init__(self, index: int, log: str):
        self.index, self.log = index, log
        self.shutdown: Shutdown | None = None

    def where(self) -> tuple[int, str]:
        return os.getpid(), node_ip()

    async def run(self, cfg: C.RunConfig) -> int:
        """One worker of the run, to its end; its exit code (an error is said in one line)."""
        cfg = replace(cfg, dashboard=False)
        stats = Stats()
        runlog = RunLog(Path(self.log), cfg.log_json)
        stats.prices = cfg.prices
        try:
            with Display(stats, str(cfg.input), live=False, runlog=runlog) as display:
                self.shutdown = Shutdown(cfg.grace_s, display, stats)
                try:
                    return await work(cfg, display, stats, self.shutdown)
                except (ReerError, ScorerError, StoreError, PromptError, ServiceError) as exc:
                    display.log(f"reer: error: {exc}", "ERROR")
                    return EXIT_ERROR
        finally:
            runlog.close()

    async def stop(self) -> None:
        """As Ctrl-C in a terminal: no new records, those in flight get --grace-s to finish."""
        if self.shutdown is not None:
            self.shutdown.request()


def free_port() -> int:
    """A port free on this node now: a scorer actor on it binds this one (and again when restarted)."""
    with socket.socket() as s:
        s.bind(("", 0))
        return s.getsockname()[1]
