"""The scorer process: the protocol of ``scorer.protocol`` over HTTP (Starlette on uvicorn),
in front of one model thread that batches (``scorer.service``).

Run as ``python -m scorer.server --model M`` (or ``reer scorer``; its options are
``scorer.settings.ScorerSettings``); it prints
``REER_URL=<url>`` on stdout as soon as it listens, and answers ``/health`` with 503 while the
model loads. It binds 127.0.0.1; any other address (``--host``) requires ``--token`` (or env
REER_SCORER_TOKEN), and every request must then carry ``Authorization: Bearer <token>``.

A request's body is read with a size cap and a deadline (413, 408), and its item count capped
(413), so no client can make the scorer hold more than ``--max-body-mb`` per request or keep a
connection waiting forever; past its first MiB a body needs one of ``--max-large-requests``
slots, so however many clients send large bodies at once, memory holds at most that many (the
others wait for a slot within the read deadline, then get 503). Tokenizing runs in its own
thread, so a large request never stops the server from answering the others, and memory the
large requests took is handed back to the system once none is in flight. SIGTERM stops taking
requests and lets those in flight finish.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ctypes
import gc
import json
import os
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from pydantic import BaseModel, ValidationError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from scorer.errors import ScoringInputError
from scorer.listen import is_loopback, listen, same_secret
from scorer.protocol import CheckRequest, CheckResponse, ErrorBody, Health, Limits, ScoreRequest, ScoreResponse
from scorer.service import (CUDA_MAX_BATCH_TOKENS, DEFAULT_MAX_BATCH_TOKENS, ScoringService, or_error,
                            result_or_error)
from scorer.settings import ScorerSettings, add_options, from_namespace

GRACEFUL_SHUTDOWN_S = 30.0  # SIGTERM: how long requests in flight may finish
LARGE_BODY_BYTES = 1 << 20  # past this a body needs a large-request slot; a step's candidates stay under it


class _Refused(Exception):
    def __init__(self, status: int, message: str):
        self.status, self.message = status, message


def _json(status: int, body: BaseModel) -> JSONResponse:
    return JSONResponse(body.model_dump(), status_code=status)


class _LargeSlots:
    """At most ``n`` large bodies held (read, parsed, encoded) at once; the memory they took is
    handed back to the system when the last of them is done."""

    def __init__(self, n: int):
        self._gate = asyncio.Semaphore(n)
        self._held = 0

    @contextlib.asynccontextmanager
    async def request(self):
        """One request's claim: ``await slot.take()`` once its body turns out large."""
        slot = _Slot(self)
        try:
            yield slot
        finally:
            if slot.large:
                self._held -= 1
                self._gate.release()
                if self._held == 0:
                    await asyncio.to_thread(_return_memory)

    async def _acquire(self) -> None:
        await self._gate.acquire()
        self._held += 1


class _Slot:
    def __init__(self, slots: _LargeSlots):
        self._slots, self.large = slots, False

    async def take(self) -> None:
        await self._slots._acquire()
        self.large = True


def _return_memory() -> None:
    gc.collect()
    if _malloc_trim is not None:
        _malloc_trim(0)  # glibc keeps freed heap pages otherwise: RSS would stay at its peak


try:
    _malloc_trim = ctypes.CDLL(None).malloc_trim
except (AttributeError, OSError):  # not glibc: its allocator returns memory as it sees fit
    _malloc_trim = None


async def _read(request: Request, schema: type[BaseModel], limits: Limits, slot: _Slot) -> BaseModel:
    """The request's body, within the limits, as ``schema``; else ``_Refused`` with its status."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limits.max_body_bytes:
        raise _Refused(413, f"body of {declared} bytes, over the scorer's limit of {limits.max_body_bytes}")
    chunks: list[bytes] = []
    size = 0
    waiting = False

    async def read() -> None:
        nonlocal size, waiting
        async for chunk in request.stream():
            size += len(chunk)
            if size > limits.max_body_bytes:
                raise _Refused(413, f"body over the scorer's limit of {limits.max_body_bytes} bytes")
            if size > LARGE_BODY_BYTES and not slot.large:
                waiting = True
                await slot.take()
                waiting = False
            chunks.append(chunk)

    try:
        await asyncio.wait_for(read(), limits.read_timeout_s)
    except asyncio.TimeoutError:
        if waiting:
            raise _Refused(503, f"busy: {limits.max_large_requests} large requests in flight; try again") from None
        raise _Refused(408, f"the body did not arrive within {limits.read_timeout_s:g} s") from None
    try:
        data = json.loads(b"".join(chunks))
    except ValueError as exc:
        raise _Refused(400, f"bad request: not JSON ({exc})") from None
    except RecursionError:
        raise _Refused(400, "bad request: JSON nested too deeply") from None
    finally:
        chunks.clear()
    items = data.get("items") if isinstance(data, dict) else None
    if isinstance(items, list) and len(items) > limits.max_items:
        raise _Refused(413, f"{len(items)} items, over the scorer's limit of {limits.max_items}")
    try:
        return schema.model_validate(data)
    except ValidationError as exc:
        raise _Refused(400, f"bad request: {exc.errors()[0]['loc']}: {exc.errors()[0]['msg']}") from None


def _per_item(results: list, response: type[BaseModel], key: str, **extra) -> JSONResponse:
    """A value or an error per item; 422 when no item at all could be taken."""
    errors = [str(r) if isinstance(r, ScoringInputError) else None for r in results]
    if errors and all(e is not None for e in errors):
        return _json(422, ErrorBody(error=errors[0]))
    values = [None if e is not None else r for r, e in zip(results, errors)]
    return _json(200, response(**{key: values}, errors=errors, **extra))


def _authorized(request: Request, token: str | None) -> bool:
    """No token asked for, or the request's bearer token, compared in constant time."""
    return token is None or same_secret(request.headers.get("authorization", ""), f"Bearer {token}")


def make_app(service: ScoringService, info: dict, limits: Limits, token: str | None = None) -> Starlette:
    slots = _LargeSlots(limits.max_large_requests)
    # The tokenizer runs off the event loop, and large requests on a thread of their own, so
    # that a step's few candidates never queue behind a multi-megabyte /check.
    encoders = {False: ThreadPoolExecutor(1, thread_name_prefix="encode"),
                True: ThreadPoolExecutor(1, thread_name_prefix="encode-large")}

    async def encoding(slot: _Slot, fn, *args):
        return await asyncio.get_running_loop().run_in_executor(encoders[slot.large], fn, *args)

    async def health(request: Request) -> JSONResponse:
        if not _authorized(request, token):
            return _json(401, ErrorBody(error="missing or wrong token"))
        if service.error:
            return _json(500, Health(status="error", error=service.error, limits=limits, **info))
        if service.model is None:
            return _json(503, Health(status="loading", limits=limits, **info))
        return _json(200, Health(status="ok", limits=limits, scored=service.scored, rounds=service.rounds,
                                 max_wait_s=round(service.max_wait_s, 3), engine=service.model.engine.snapshot(),
                                 **info))

    async def admit(request: Request, schema: type[BaseModel], slot: _Slot) -> BaseModel | JSONResponse:
        """The request, parsed within the limits; or the error response that refuses it."""
        if not _authorized(request, token):
            return _json(401, ErrorBody(error="missing or wrong token"))
        try:
            req = await _read(request, schema, limits, slot)
        except _Refused as exc:
            return _json(exc.status, ErrorBody(error=exc.message))
        if service.model is None:
            return _json(503, ErrorBody(error="the scorer is not ready"))
        return req

    async def check(request: Request) -> JSONResponse:
        async with slots.request() as slot:
            req = await admit(request, CheckRequest, slot)
            if isinstance(req, JSONResponse):
                return req
            results = await encoding(slot, lambda: [or_error(service.check, it) for it in req.items])
            return _per_item(results, CheckResponse, "tokens", max_context=service.model.max_context)

    async def score(request: Request) -> JSONResponse:
        async with slots.request() as slot:
            req = await admit(request, ScoreRequest, slot)
            if isinstance(req, JSONResponse):
                return req
            futures = await encoding(slot, service.submit, req.items)
            del req  # the texts are not needed once encoded: the slot is free before the wait for scores
        await asyncio.gather(*(asyncio.wrap_future(f) for f in futures), return_exceptions=True)
        try:
            results = [result_or_error(f) for f in futures]
        except Exception as exc:  # the model failed on a batch: this request's answer, not the process's
            return _json(500, ErrorBody(error=f"{type(exc).__name__}: {exc}"))
        return _per_item(results, ScoreResponse, "scores", tokens=[f.tokens for f in futures])

    return Starlette(routes=[Route("/health", health), Route("/check", check, methods=["POST"]),
                             Route("/score", score, methods=["POST"])])


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m scorer.server", description="reer's PPL scorer process")
    add_options(p)
    p.add_argument("--settings-json", default=None,
                   help="all the settings above as one JSON object (how agents.run starts its scorer)")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--token", default=os.environ.get("REER_SCORER_TOKEN"),
                   help="require 'Authorization: Bearer TOKEN' (mandatory when --host is not loopback)")
    p.add_argument("--exit-with-parent", action="store_true", help="exit when the parent process dies")
    return p


def main(argv: list[str] | None = None) -> int:
    import uvicorn

    p = build_parser()
    args = p.parse_args(argv)
    if not is_loopback(args.host) and not args.token:
        p.error(f"--host {args.host} exposes the scorer beyond this machine: set --token (or REER_SCORER_TOKEN)")
    if args.exit_with_parent:
        from scorer.lifetime import exit_with_parent

        exit_with_parent()
    try:
        st = ScorerSettings.from_json(args.settings_json) if args.settings_json else from_namespace(args)
    except (ValueError, TypeError) as exc:
        p.error(str(exc))
    limits = Limits(max_body_bytes=int(st.max_body_mb * (1 << 20)), max_items=st.max_items,
                    read_timeout_s=st.read_timeout_s, max_large_requests=st.max_large_requests)
    service = ScoringService(st.max_batch_tokens or DEFAULT_MAX_BATCH_TOKENS)
    info: dict = {"model": st.model, "scoring_prompt": st.scoring_prompt,
                  "single_segment_answer": st.single_segment_answer}
    sock, url = listen(args.host, args.port)
    server = uvicorn.Server(uvicorn.Config(make_app(service, info, limits, args.token), log_level="warning",
                                           access_log=False, lifespan="off",
                                           timeout_graceful_shutdown=int(GRACEFUL_SHUTDOWN_S)))
    outcome = {"code": 0}

    def load_then_serve() -> None:
        try:
            from scorer.model import ScoringModel

            model = ScoringModel(st.model, device=st.device, dtype=st.dtype, threads=st.threads,
                                 chat_format=st.chat_format, prompts_dir=st.prompts_dir and Path(st.prompts_dir),
                                 max_context=st.max_context,
                                 prefix_cache_bytes=None if st.prefix_cache_mb is None else st.prefix_cache_mb << 20,
                                 compile=st.compile, scoring_prompt=st.scoring_prompt,
                                 single_segment_answer=st.single_segment_answer)
        except Exception as exc:
            service.error = f"{type(exc).__name__}: {exc}"
            print(f"scorer: {service.error}", file=sys.stderr, flush=True)
            time.sleep(1.0)  # let a waiting client read the error from /health
            outcome["code"] = 2
            server.should_exit = True
            return
        if st.max_batch_tokens is None and model.device.type == "cuda":
            service.max_batch_tokens = CUDA_MAX_BATCH_TOKENS
        info.update(device=str(model.device), dtype=str(model.dtype).removeprefix("torch."),
                    max_batch_tokens=service.max_batch_tokens, compiled=st.compile,
                    scoring_prompt_id=model.encoder.prompt_id)
        service.model = model
        print(f"scorer: ready ({st.model} on {model.device}, {info['dtype']}{', compiled' if st.compile else ''})",
              file=sys.stderr, flush=True)
        service.loop()

    print(f"REER_URL={url}", flush=True)
    threading.Thread(target=load_then_serve, name="model", daemon=True).start()
    server.run(sockets=[sock])
    return outcome["code"]


if __name__ == "__main__":
    sys.exit(main())
