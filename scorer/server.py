"""The scorer process: an HTTP endpoint on 127.0.0.1 with one model thread that batches.

    POST /score   {"items": [{"question", "thinking", "answer", "lang"}]}
                  -> {"scores": [float], "tokens": [int]}       (422 for an unscorable item)
    POST /check   {"items": [{"question", "answer", "lang"}]}  tokenize only: 422 when the
                  question and answer alone do not fit the context -> {"tokens": [int], "max_context"}
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
from concurrent.futures import Future
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from scorer.batching import run_batched
from scorer.errors import ScorerError, ScoringInputError

DEFAULT_MAX_BATCH_TOKENS = 16384  # padded tokens per forward pass
GATHER_WINDOW_S = 0.005  # after the first request, wait this long for others to batch with it


class ScoringService:
    """Queue + model thread. ``model`` is set once loading finishes."""

    def __init__(self, max_batch_tokens: int = DEFAULT_MAX_BATCH_TOKENS):
        self.model = None
        self.error: str | None = None
        self.max_batch_tokens = max_batch_tokens
        self._queue: queue.Queue = queue.Queue()
        self.scored = 0

    def check(self, item: dict) -> int:
        if self.model is None:
            raise ScorerError("the scorer is not ready")
        return len(self.model.encode(item["question"], "", item["answer"], item.get("lang", "en")))

    def submit(self, item: dict) -> Future:
        if self.model is None:
            raise ScorerError("the scorer is not ready")
        enc = self.model.encode(item["question"], item["thinking"], item["answer"], item.get("lang", "en"))
        fut: Future = Future()
        fut.tokens = len(enc.positions)  # type: ignore[attr-defined]
        self._queue.put((enc, fut))
        return fut

    def loop(self) -> None:
        from scorer.model import is_oom

        while True:
            pending = [self._queue.get()]
            deadline = time.monotonic() + GATHER_WINDOW_S
            while (left := deadline - time.monotonic()) > 0:
                try:
                    pending.append(self._queue.get(timeout=left))
                except queue.Empty:
                    break
            while True:  # and everything else already waiting
                try:
                    pending.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            encs = [e for e, _ in pending]
            try:
                scores = run_batched(encs, [len(e) for e in encs], self.max_batch_tokens, self.model.score, is_oom,
                                     groups=self.model.groups(encs))
            except BaseException as exc:  # answer every waiting caller, then keep serving
                for _, fut in pending:
                    fut.set_exception(exc)
                continue
            for (_, fut), s in zip(pending, scores):
                fut.set_result(s)
            self.scored += len(pending)


class Server(ThreadingHTTPServer):
    # Every concurrent search holds a connection: the default listen backlog of 5 would reset
    # the excess under load.
    request_queue_size = 1024
    daemon_threads = True


def make_handler(service: ScoringService, info: dict, token: str | None = None):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

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
            self._send(200, {"status": "ok", "scored": service.scored, **info})

        def do_POST(self):
            if not self._authorized():
                return
            if self.path not in ("/score", "/check"):
                return self._send(404, {"error": "not found"})
            try:
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))))
                items = body["items"]
                if self.path == "/check":
                    tokens = [service.check(it) for it in items]
                    return self._send(200, {"tokens": tokens, "max_context": service.model.max_context})
                futures = [service.submit(it) for it in items]
                scores = [f.result() for f in futures]
            except ScoringInputError as exc:
                return self._send(422, {"error": str(exc)})
            except (KeyError, TypeError, ValueError) as exc:
                return self._send(400, {"error": f"bad request: {exc}"})
            except Exception as exc:
                return self._send(500, {"error": f"{type(exc).__name__}: {exc}"})
            self._send(200, {"scores": scores, "tokens": [f.tokens for f in futures]})

    return Handler


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m scorer.server", description="reer's PPL scorer process")
    p.add_argument("--model", required=True)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--dtype", default="auto", choices=["auto", "float32", "bfloat16", "float16"])
    p.add_argument("--device", default=None)
    p.add_argument("--chat-format", default=None)
    p.add_argument("--prompts-dir", type=Path, default=None)
    p.add_argument("--max-batch-tokens", type=int, default=DEFAULT_MAX_BATCH_TOKENS)
    p.add_argument("--max-context", type=int, default=None,
                   help="longest scoring text in tokens (default: the model config's max_position_embeddings)")
    p.add_argument("--token", default=os.environ.get("REER_SCORER_TOKEN"),
                   help="require 'Authorization: Bearer TOKEN' (mandatory when --host is not loopback)")
    p.add_argument("--exit-with-parent", action="store_true", help="exit when the parent process dies")
    args = p.parse_args(argv)
    if not ipaddress.ip_address(socket.gethostbyname(args.host)).is_loopback and not args.token:
        p.error(f"--host {args.host} exposes the scorer beyond this machine: set --token (or REER_SCORER_TOKEN)")
    if args.exit_with_parent:
        from agents.process import exit_with_parent

        exit_with_parent()

    service = ScoringService(args.max_batch_tokens)
    info: dict = {"model": args.model}
    httpd = Server((args.host, args.port), make_handler(service, info, args.token))
    shown = "127.0.0.1" if args.host in ("0.0.0.0", "::") else args.host
    print(f"REER_URL=http://{shown}:{httpd.server_address[1]}", flush=True)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        from scorer.model import ScoringModel

        model = ScoringModel(args.model, device=args.device, dtype=args.dtype, threads=args.threads,
                             chat_format=args.chat_format, prompts_dir=args.prompts_dir, max_context=args.max_context)
    except Exception as exc:
        service.error = f"{type(exc).__name__}: {exc}"
        print(f"scorer: {service.error}", file=sys.stderr, flush=True)
        time.sleep(1.0)  # let a waiting client read the error from /health
        return 2
    info.update(device=str(model.device), dtype=str(model.dtype).removeprefix("torch."))
    service.model = model
    print(f"scorer: ready ({args.model} on {model.device}, {info['dtype']})", file=sys.stderr, flush=True)
    try:
        service.loop()
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
