"""The scorer process: an HTTP endpoint on 127.0.0.1 with one model thread that batches.

    POST /score   {"items": [{"question", "thinking", "answer", "lang"}]}
                  -> {"scores": [float|null], "errors": [str|null], "tokens": [int]}
                  an item that cannot be scored (too long) gets an error, the others their scores
    POST /check   {"items": [{"question", "answer", "lang"}]}  tokenize only
                  -> {"tokens": [int|null], "errors": [str|null], "max_context"}: an error where the
                  question and answer alone do not fit the context
    (either answers 422 when no item at all can be taken)
    GET  /health  -> 200 {"status": "ok", ...} when ready, 503 while the model loads

It binds 127.0.0.1. Binding any other address (``--host``) requires ``--token`` (or env
REER_SCORER_TOKEN): every request must then carry ``Authorization: Bearer <token>``.

Handler threads tokenize and enqueue; the single model thread drains the queue, forms batches
by a token budget and answers each request. Run as ``python -m scorer.server --model M``; it
prints ``REER_URL=<url>`` on stdout as soon as it listens.
"""

from __future__ import annotations

import argparse
import hmac
import ipaddress
import json
import os
import queue
import socket
import sys
import threading
import time
from collections import deque
from concurrent.futures import Future
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from prompts import SCORING_PROMPTS
from scorer.batching import plan_batches, run_halving, take_round
from scorer.errors import ScorerError, ScoringInputError
from scorer.span import SINGLE_SEGMENT_MODES

DEFAULT_MAX_BATCH_TOKENS = 16384  # padded tokens per forward pass on CPU
CUDA_MAX_BATCH_TOKENS = 65536  # a GPU needs more rows per forward to be busy (bench/gpu.sh)
GATHER_WINDOW_S = 0.005  # after the first request, wait this long for others to batch with it
ROUND_BATCHES = 4  # a round serves at most this many batches' worth of the oldest requests


@dataclass
class Job:
    """One HTTP request's items, queued together so that they are served in the same round."""

    encs: list
    futures: list[Future]
    arrived: float = field(default_factory=time.monotonic)

    @property
    def tokens(self) -> int:
        return sum(len(e) for e in self.encs)


class ScoringService:
    """Queue + model thread. ``model`` is set once loading finishes.

    The model thread serves rounds: the oldest waiting requests, as many as fit
    ``ROUND_BATCHES`` batches' worth of tokens (at least one), planned into batches longest
    first. Admission is first come first served, so no request, however large, can keep the
    others waiting for more than the rounds ahead of it; each batch's callers are answered as
    soon as that batch is done."""

    def __init__(self, max_batch_tokens: int = DEFAULT_MAX_BATCH_TOKENS):
        self.model = None
        self.error: str | None = None
        self.max_batch_tokens = max_batch_tokens
        self._queue: queue.Queue[Job] = queue.Queue()
        self._backlog: deque[Job] = deque()
        self.scored = 0
        self.rounds = 0
        self.max_wait_s = 0.0

    def check(self, item: dict) -> int:
        if self.model is None:
            raise ScorerError("the scorer is not ready")
        return len(self.model.encode(item["question"], "", item["answer"], item.get("lang", "en")))

    def submit(self, items: list[dict]) -> list[Future]:
        """Queue a request's items together; an item that cannot be encoded (too long) gets a
        future that already holds its ``ScoringInputError``."""
        if self.model is None:
            raise ScorerError("the scorer is not ready")
        futures: list[Future] = []
        job = Job([], [])
        for it in items:
            fut: Future = Future()
            try:
                enc = self.model.encode(it["question"], it["thinking"], it["answer"], it.get("lang", "en"))
            except ScoringInputError as exc:
                fut.set_exception(exc)
                fut.tokens = 0  # type: ignore[attr-defined]
            else:
                fut.tokens = len(enc.positions)  # type: ignore[attr-defined]
                job.encs.append(enc)
                job.futures.append(fut)
            futures.append(fut)
        if job.encs:
            self._queue.put(job)
        return futures

    def loop(self) -> None:
        while True:
            self.serve_round(self.next_round())

    def next_round(self) -> list[Job]:
        """Wait for work, then take the oldest jobs that fit one round."""
        if not self._backlog:
            self._backlog.append(self._queue.get())
            deadline = time.monotonic() + GATHER_WINDOW_S  # let a burst of requests batch together
            while (left := deadline - time.monotonic()) > 0:
                try:
                    self._backlog.append(self._queue.get(timeout=left))
                except queue.Empty:
                    break
        while True:  # and everything else already waiting
            try:
                self._backlog.append(self._queue.get_nowait())
            except queue.Empty:
                break
        n = take_round([job.tokens for job in self._backlog], ROUND_BATCHES * self.max_batch_tokens)
        return [self._backlog.popleft() for _ in range(n)]

    def serve_round(self, jobs: list[Job]) -> None:
        from scorer.engine import is_oom

        now = time.monotonic()
        self.max_wait_s = max([self.max_wait_s, *(now - job.arrived for job in jobs)])
        encs = [e for job in jobs for e in job.encs]
        futures = [f for job in jobs for f in job.futures]
        try:
            groups = self.model.groups(encs)
        except Exception:  # grouping is an optimisation: never a reason to fail
            groups = None
        for batch in plan_batches([len(e) for e in encs], self.max_batch_tokens, groups):
            try:
                scores = run_halving([encs[i] for i in batch], self.model.score, is_oom)
            except BaseException as exc:  # answer this batch's callers, then keep serving
                for i in batch:
                    futures[i].set_exception(exc)
                continue
            for i, s in zip(batch, scores):
                futures[i].set_result(s)
            self.scored += len(batch)
        self.rounds += 1


class Server(ThreadingHTTPServer):
    # Every concurrent search holds a connection: the default listen backlog of 5 would reset
    # the excess under load.
    request_queue_size = 1024
    daemon_threads = True


def make_handler(service: ScoringService, info: dict, token: str | None = None):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        disable_nagle_algorithm = True  # headers and body go out in two writes: no 40 ms delayed-ACK stall

        def _authorized(self) -> bool:
            if token is None or hmac.compare_digest(self.headers.get("Authorization", ""), f"Bearer {token}"):
                return True
            self._send(401, {"error": "missing or wrong token"})
            return False

        def log_message(self, fmt, *args):  # keep stderr for real problems
            pass

        def _send(self, status: int, body: dict) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self):
            if not self._authorized():
                return
            if self.path != "/health":
                return self._send(404, {"error": "not found"})
            if service.error:
                return self._send(500, {"status": "error", "error": service.error})
            if service.model is None:
                return self._send(503, {"status": "loading"})
            self._send(200, {"status": "ok", "scored": service.scored, "rounds": service.rounds,
                             "max_wait_s": round(service.max_wait_s, 3), "engine": service.model.engine.snapshot(),
                             **info})

        def do_POST(self):
            if not self._authorized():
                return
            if self.path not in ("/score", "/check"):
                return self._send(404, {"error": "not found"})
            try:
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))))
                items = body["items"]
                if self.path == "/check":
                    return self._send(*_per_item([_or_error(service.check, it) for it in items], "tokens",
                                                 max_context=service.model.max_context))
                futures = service.submit(items)
                results = [_result_or_error(f) for f in futures]  # waits for each
                status, body = _per_item(results, "scores", tokens=[f.tokens for f in futures])
            except (KeyError, TypeError, ValueError) as exc:
                return self._send(400, {"error": f"bad request: {exc}"})
            except Exception as exc:
                return self._send(500, {"error": f"{type(exc).__name__}: {exc}"})
            self._send(status, body)

    return Handler


def _or_error(fn, item):
    try:
        return fn(item)
    except ScoringInputError as exc:
        return exc


def _result_or_error(fut: Future):
    """An item's score, or its ``ScoringInputError``; any other failure propagates."""
    exc = fut.exception()
    if exc is not None and not isinstance(exc, ScoringInputError):
        raise exc
    return exc if exc is not None else fut.result()


def _per_item(results: list, key: str, **extra) -> tuple[int, dict]:
    """A response with a value or an error per item; 422 when no item at all could be taken."""
    errors = [str(r) if isinstance(r, ScoringInputError) else None for r in results]
    if errors and all(e is not None for e in errors):
        return 422, {"error": errors[0]}
    return 200, {key: [None if e is not None else r for r, e in zip(results, errors)], "errors": errors, **extra}


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m scorer.server", description="reer's PPL scorer process")
    p.add_argument("--model", required=True)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--dtype", default="auto", choices=["auto", "float32", "bfloat16", "float16"])
    p.add_argument("--device", default=None)
    p.add_argument("--chat-format", default=None)
    p.add_argument("--prompts-dir", type=Path, default=None)
    p.add_argument("--max-batch-tokens", type=int, default=None,
                   help=f"tokens per forward pass, counted as rows x the longest row (default: {DEFAULT_MAX_BATCH_TOKENS} on CPU, "
                        f"{CUDA_MAX_BATCH_TOKENS} on CUDA)")
    p.add_argument("--prefix-cache-mb", type=int, default=None,
                   help="memory for KV caches of prefixes kept across a record's steps, 0 to keep none "
                        "(default: 1024 on CPU, a tenth of the GPU's memory on CUDA)")
    p.add_argument("--max-context", type=int, default=None,
                   help="longest scoring text in tokens (default: the model config's max_position_embeddings)")
    p.add_argument("--compile", action="store_true",
                   help="fuse each layer's norms and MLP with torch.compile, at load (for GPUs; little gain on CPU)")
    p.add_argument("--scoring-prompt", choices=list(SCORING_PROMPTS), default="brief",
                   help="the standard-inference prompt the answer is conditioned on: brief (a writing-thinking "
                        "brief, as the reference's) or short (a two-line instruction)")
    p.add_argument("--single-segment-answer", choices=list(SINGLE_SEGMENT_MODES), default="whole",
                   help="an answer of one segment: score it whole, or as the reference's code does (one token)")
    p.add_argument("--token", default=os.environ.get("REER_SCORER_TOKEN"),
                   help="require 'Authorization: Bearer TOKEN' (mandatory when --host is not loopback)")
    p.add_argument("--exit-with-parent", action="store_true", help="exit when the parent process dies")
    return p


def main(argv: list[str] | None = None) -> int:
    p = build_parser()
    args = p.parse_args(argv)
    if not ipaddress.ip_address(socket.gethostbyname(args.host)).is_loopback and not args.token:
        p.error(f"--host {args.host} exposes the scorer beyond this machine: set --token (or REER_SCORER_TOKEN)")
    if args.exit_with_parent:
        from scorer.lifetime import exit_with_parent

        exit_with_parent()

    service = ScoringService(args.max_batch_tokens or DEFAULT_MAX_BATCH_TOKENS)
    info: dict = {"model": args.model, "scoring_prompt": args.scoring_prompt,
                  "single_segment_answer": args.single_segment_answer}
    httpd = Server((args.host, args.port), make_handler(service, info, args.token))
    shown = "127.0.0.1" if args.host in ("0.0.0.0", "::") else args.host
    print(f"REER_URL=http://{shown}:{httpd.server_address[1]}", flush=True)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        from scorer.model import ScoringModel

        model = ScoringModel(args.model, device=args.device, dtype=args.dtype, threads=args.threads,
                             chat_format=args.chat_format, prompts_dir=args.prompts_dir, max_context=args.max_context,
                             prefix_cache_bytes=None if args.prefix_cache_mb is None else args.prefix_cache_mb << 20,
                             compile=args.compile, scoring_prompt=args.scoring_prompt,
                             single_segment_answer=args.single_segment_answer)
    except Exception as exc:
        service.error = f"{type(exc).__name__}: {exc}"
        print(f"scorer: {service.error}", file=sys.stderr, flush=True)
        time.sleep(1.0)  # let a waiting client read the error from /health
        return 2
    if args.max_batch_tokens is None and model.device.type == "cuda":
        service.max_batch_tokens = CUDA_MAX_BATCH_TOKENS
    info.update(device=str(model.device), dtype=str(model.dtype).removeprefix("torch."),
                max_batch_tokens=service.max_batch_tokens, compiled=args.compile)
    service.model = model
    print(f"scorer: ready ({args.model} on {model.device}, {info['dtype']}{', compiled' if args.compile else ''})",
          file=sys.stderr, flush=True)
    try:
        service.loop()
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
