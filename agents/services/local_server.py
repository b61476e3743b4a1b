"""The embedded endpoint: llama.cpp's OpenAI-compatible server (``xllamacpp``) on 127.0.0.1,
serving the Gemma 3 270M GGUF from PyPI. Run by ``agents.run`` when no ``--endpoint`` is given:

    python -m agents.services.local_server [--model FILE.gguf] [--port N] [--parallel 4] [--ctx 8192]

It prints ``REER_URL=http://127.0.0.1:<port>/v1`` once the model is loaded, then serves until
terminated (or until its parent dies, with ``--exit-with-parent``).
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import sys
import threading

DEMO_ALIAS = "gemma3-270m"
DEFAULT_PARALLEL = 4  # llama.cpp slots: concurrent requests; `n` > 1 uses one slot per choice
DEFAULT_CTX = 16384  # shared by the slots: 4096 tokens each


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m agents.services.local_server", description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default=None, help="a .gguf file (default: the Gemma 3 270M demo model)")
    p.add_argument("--alias", default=DEMO_ALIAS, help="the model name the endpoint lists")
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--parallel", type=int, default=DEFAULT_PARALLEL)
    p.add_argument("--ctx", type=int, default=DEFAULT_CTX)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--chat-template", default="gemma", help="llama.cpp built-in template name")
    p.add_argument("--exit-with-parent", action="store_true")
    args = p.parse_args(argv)
    if args.exit_with_parent:
        from scorer.lifetime import exit_with_parent

        exit_with_parent()
    try:
        import xllamacpp as xlc
    except ImportError:
        print("the embedded endpoint needs xllamacpp: pip install 'reer[local]'", file=sys.stderr)
        return 2
    model = args.model
    if model is None:
        from scorer.loading import demo_gguf_path

        model = str(demo_gguf_path())
    params = xlc.CommonParams()
    params.model.path = str(model)
    params.model_alias = {args.alias}  # a set in xllamacpp
    params.hostnames = ["127.0.0.1"]  # never exposed beyond this machine
    params.port = args.port or free_port()
    params.n_parallel = args.parallel
    params.n_ctx = args.ctx
    params.chat_template = args.chat_template
    params.use_jinja = False  # the GGUF has no jinja template; use llama.cpp's built-in one
    if args.threads:
        params.cpuparams.n_threads = args.threads
        params.cpuparams_batch.n_threads = args.threads
    server = xlc.Server(params)  # loads the model and starts listening; returns when ready
    print(f"REER_URL=http://127.0.0.1:{params.port}/v1", flush=True)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    stop.wait()
    del server
    os._exit(0)  # llama.cpp's threads need no orderly shutdown; the OS frees the model


if __name__ == "__main__":
    sys.exit(main())
