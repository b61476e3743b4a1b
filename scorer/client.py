"""The agents' side of the scorer: an async HTTP client, and the process that serves it.

Kept free of torch: importing this module never loads a model into the agents' event loop.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from collections import deque
from pathlib import Path

import httpx

from scorer.errors import ScorerError, ScorerUnavailable, ScoringInputError

DEFAULT_START_TIMEOUT_S = 600.0  # converting a GGUF on first use takes minutes on 2 cores
DEFAULT_SCORE_TIMEOUT_S = 3600.0  # a request waits in the queue behind every other record's


class ScorerClient:
    def __init__(self, url: str, timeout_s: float = DEFAULT_SCORE_TIMEOUT_S):
        self.url = url.rstrip("/")
        self._http = httpx.AsyncClient(timeout=httpx.Timeout(timeout_s, connect=10.0),
                                       limits=httpx.Limits(max_connections=256, max_keepalive_connections=256))

    async def score(self, question: str, thinking: str, answer: str, lang: str) -> float:
        item = {"question": question, "thinking": thinking, "answer": answer, "lang": lang}
        try:
            r = await self._http.post(f"{self.url}/score", json={"items": [item]})
        except httpx.HTTPError as exc:
            raise ScorerUnavailable(f"the scorer at {self.url} did not answer: {exc!r}") from exc
        if r.status_code == 422:
            raise ScoringInputError(r.json().get("error", r.text))
        if r.status_code != 200:
            raise ScorerError(f"the scorer failed (HTTP {r.status_code}): {r.text[:500]}")
        return float(r.json()["scores"][0])

    async def health(self) -> httpx.Response:
        return await self._http.get(f"{self.url}/health")

    async def aclose(self) -> None:
        await self._http.aclose()


class ScorerProcess:
    """``python -m scorer.server`` as a child process: started, health-checked, stopped."""

    def __init__(self, args: list[str], log_path: Path | None = None):
        self.args = args
        self.log_path = log_path
        self.proc: asyncio.subprocess.Process | None = None
        self.url: str | None = None
        self._log = None

    async def start(self, timeout_s: float = DEFAULT_START_TIMEOUT_S) -> str:
        if self.log_path:
            self.log_path.parent.mkdir(parents=True, exist_ok=True)
            self._log = open(self.log_path, "ab")
        self.proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "scorer.server", *self.args, "--exit-with-parent",
            stdout=asyncio.subprocess.PIPE, stderr=self._log or asyncio.subprocess.DEVNULL,
            stdin=asyncio.subprocess.DEVNULL, env={**os.environ, "PYTHONUNBUFFERED": "1"},
            start_new_session=True,  # a Ctrl-C in the terminal is handled by agents.run, not here
        )
        try:
            return await asyncio.wait_for(self._wait_ready(), timeout_s)
        except asyncio.TimeoutError:
            await self.stop()
            raise ScorerUnavailable(f"the scorer was not ready after {timeout_s:.0f} s{self._tail()}") from None
        except BaseException:
            await self.stop()
            raise

    async def _wait_ready(self) -> str:
        assert self.proc and self.proc.stdout
        line = (await self.proc.stdout.readline()).decode().strip()
        if not line.startswith("REER_SCORER_PORT="):
            await self.proc.wait()
            raise ScorerUnavailable(f"the scorer process exited (code {self.proc.returncode}){self._tail()}")
        self.url = f"http://127.0.0.1:{line.split('=', 1)[1]}"
        client = ScorerClient(self.url)
        try:
            while True:
                if self.proc.returncode is not None:
                    raise ScorerUnavailable(f"the scorer process exited (code {self.proc.returncode}){self._tail()}")
                try:
                    r = await client.health()
                    if r.status_code == 200:
                        return self.url
                    if r.status_code == 500:
                        raise ScorerUnavailable(f"the scorer failed to start: {r.json().get('error')}")
                except httpx.HTTPError:
                    pass
                await asyncio.sleep(0.2)
        finally:
            await client.aclose()

    def _tail(self, lines: int = 8) -> str:
        if not self.log_path or not self.log_path.is_file():
            return ""
        tail = deque(self.log_path.read_text(errors="replace").splitlines(), maxlen=lines)
        return "; its log ends:\n  " + "\n  ".join(tail) if tail else ""

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
