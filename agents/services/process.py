"""A helper service as a child process: the scorer, or the embedded llama.cpp endpoint.

The child announces ``REER_URL=<base url>`` on stdout once it listens; it is ready when
``<base url without /v1>/health`` answers 200. It is started in its own session (a Ctrl-C in the
terminal reaches ``agents.run`` only, which then stops it in order) and is told to exit when its
parent dies, so even a SIGKILLed run leaves no process behind.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from collections import deque
from pathlib import Path

import httpx

READY_PREFIX = "REER_URL="
DEFAULT_START_TIMEOUT_S = 900.0  # converting the demo GGUF on first use takes minutes on 2 cores


# A child has no use for these: the API key goes to the endpoint only, and the scorer a run
# starts binds loopback without a token (one inherited would make it refuse the run itself).
SECRET_VARIABLES = ("OPENAI_API_KEY", "REER_SCORER_TOKEN")


def child_env() -> dict[str, str]:
    return {**{k: v for k, v in os.environ.items() if k not in SECRET_VARIABLES}, "PYTHONUNBUFFERED": "1"}


class ServiceError(Exception):
    """The child service did not start or died; the message includes the end of its log."""


class ChildService:
    def __init__(self, name: str, module: str, args: list[str], log_path: Path):
        self.name, self.module, self.args, self.log_path = name, module, args, log_path
        self.proc: asyncio.subprocess.Process | None = None
        self.url: str | None = None
        self._log = None

    async def start(self, timeout_s: float = DEFAULT_START_TIMEOUT_S) -> str:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log = open(self.log_path, "ab")
        self.proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", self.module, *self.args, "--exit-with-parent",
            stdout=asyncio.subprocess.PIPE, stderr=self._log, stdin=asyncio.subprocess.DEVNULL,
            env=child_env(), start_new_session=True,
        )
        try:
            return await asyncio.wait_for(self._wait_ready(), timeout_s)
        except asyncio.TimeoutError:
            await self.stop()
            raise ServiceError(f"the {self.name} was not ready after {timeout_s:.0f} s{self.tail()}") from None
        except BaseException:
            await self.stop()
            raise

    async def _wait_ready(self) -> str:
        assert self.proc and self.proc.stdout
        line = ""
        while not line.startswith(READY_PREFIX):
            raw = await self.proc.stdout.readline()
            if not raw:
                await self.proc.wait()
                raise ServiceError(f"the {self.name} exited (code {self.proc.returncode}){self.tail()}")
            line = raw.decode(errors="replace").strip()
        self.url = line.removeprefix(READY_PREFIX)
        health = self.url.removesuffix("/v1") + "/health"
        async with httpx.AsyncClient(timeout=5.0) as http:
            while True:
                if self.proc.returncode is not None:
                    raise ServiceError(f"the {self.name} exited (code {self.proc.returncode}){self.tail()}")
                try:
                    r = await http.get(health)
                    if r.status_code == 200:
                        return self.url
                    if r.status_code == 500:
                        raise ServiceError(f"the {self.name} failed to start: {r.text[:500]}{self.tail()}")
                except httpx.HTTPError:
                    pass
                await asyncio.sleep(0.2)

    def alive(self) -> bool:
        return self.proc is not None and self.proc.returncode is None

    async def wait_exit(self, timeout_s: float) -> bool:
        """True once the process has exited (waiting up to ``timeout_s`` to find out)."""
        if self.proc is None:
            return True
        try:
            await asyncio.wait_for(self.proc.wait(), timeout_s)
            return True
        except asyncio.TimeoutError:
            return False

    def tail(self, lines: int = 8) -> str:
        if not self.log_path.is_file():
            return ""
        text = deque(self.log_path.read_text(errors="replace").splitlines(), maxlen=lines)
        return f"; its log ({self.log_path}) ends:\n  " + "\n  ".join(text) if text else ""

    async def stop(self, grace_s: float = 5.0) -> None:
        proc, self.proc = self.proc, None
        if proc is not None and proc.returncode is None:
            try:
                proc.send_signal(signal.SIGTERM)
                await asyncio.wait_for(proc.wait(), grace_s)
            except ProcessLookupError:
                pass
            except asyncio.TimeoutError:
                proc.kill()
                await proc.wait()
        if self._log:
            self._log.close()
            self._log = None
