"""What a scorer process is started with, defined once.

``ScorerSettings`` holds every scorer option: its name, type, default, help and validation.
``python -m scorer.server`` builds its command line from it, ``agents.run`` builds its
``--scorer-*`` options from it, and a run hands its scorer child the settings as JSON
(``--settings-json``), never as a command line to parse again.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import MISSING, asdict, dataclass, field, fields
from typing import Any

from prompts import SCORING_PROMPTS
from scorer.loading import DEMO_MODEL
from scorer.protocol import (DEFAULT_MAX_BODY_BYTES, DEFAULT_MAX_ITEMS, DEFAULT_MAX_LARGE_REQUESTS,
                             DEFAULT_READ_TIMEOUT_S)
from scorer.service import CUDA_MAX_BATCH_TOKENS, DEFAULT_MAX_BATCH_TOKENS
from scorer.span import SINGLE_SEGMENT_MODES

DTYPES = ("auto", "float32", "bfloat16", "float16")


def _opt(help_: str, type_: type = str, choices: tuple | None = None, minimum: float | None = None) -> dict:
    return {"help": help_, "type": type_, "choices": choices, "minimum": minimum}


@dataclass(frozen=True)
class ScorerSettings:
    model: str = field(default=DEMO_MODEL, metadata=_opt("hub id, local folder or .gguf file"))
    threads: int | None = field(default=None, metadata=_opt("torch CPU threads (default: torch's)", int, minimum=1))
    dtype: str = field(default="auto", metadata=_opt("auto: bfloat16 on CUDA, float32 on CPU", choices=DTYPES))
    device: str | None = field(default=None, metadata=_opt("cuda, cuda:1, cpu ... (default: cuda when present)"))
    chat_format: str | None = field(default=None, metadata=_opt(
        "a built-in chat format (gemma, chatml, plain) for a tokenizer without a chat template"))
    max_batch_tokens: int | None = field(default=None, metadata=_opt(
        f"tokens per forward pass, counted as rows x the longest row (default: {DEFAULT_MAX_BATCH_TOKENS} on CPU, "
        f"{CUDA_MAX_BATCH_TOKENS} on CUDA)", int, minimum=1))
    prefix_cache_mb: int | None = field(default=None, metadata=_opt(
        "memory for KV caches of prefixes kept across a record's steps, 0 for none (default: 1024 on CPU, a tenth "
        "of the GPU's memory on CUDA)", int, minimum=0))
    max_context: int | None = field(default=None, metadata=_opt(
        "longest scoring text in tokens (default: the model's); records whose question and answer do not fit are "
        "skipped, longer thinkings rejected", int, minimum=1))
    compile: bool = field(default=False, metadata=_opt(
        "fuse each layer's norms and MLP with torch.compile, at load (for GPUs; little gain on CPU)", bool))
    scoring_prompt: str = field(default="brief", metadata=_opt(
        "what the scored answer is conditioned on: brief, a writing-thinking brief with the elements of the "
        "reference's; short, a two-line instruction", choices=tuple(SCORING_PROMPTS)))
    single_segment_answer: str = field(default="whole", metadata=_opt(
        "an answer of one segment: score it whole, or as the reference's code does (one token, the newline after "
        "it, so the record stops at once)", choices=SINGLE_SEGMENT_MODES))
    prompts_dir: str | None = field(default=None, metadata=_opt("override prompt files (<lang>/<name>.txt)"))
    max_body_mb: float = field(default=DEFAULT_MAX_BODY_BYTES / (1 << 20), metadata=_opt(
        "largest request body; a larger one is refused with 413", float, minimum=1e-6))
    max_items: int = field(default=DEFAULT_MAX_ITEMS, metadata=_opt(
        "most items in one request (413 past it)", int, minimum=1))
    read_timeout_s: float = field(default=DEFAULT_READ_TIMEOUT_S, metadata=_opt(
        "time for a request's whole body to arrive (408 past it)", float, minimum=1e-6))
    max_large_requests: int = field(default=DEFAULT_MAX_LARGE_REQUESTS, metadata=_opt(
        "requests with a body over 1 MiB held at once; others wait for one to finish", int, minimum=1))

    def __post_init__(self) -> None:
        if len(self.model) > 1:  # "models/qwen/" and "models/qwen" are one model (and one stored config)
            object.__setattr__(self, "model", self.model.rstrip("/"))
        for f in fields(self):
            value, meta = getattr(self, f.name), f.metadata
            if value is None or meta["type"] is bool:
                continue
            if meta["choices"] and value not in meta["choices"]:
                raise ValueError(f"{f.name} must be one of {', '.join(meta['choices'])}, not {value!r}")
            if meta["minimum"] is not None and value < meta["minimum"]:
                raise ValueError(f"{f.name} must be at least {meta['minimum']:g}, not {value}")

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> ScorerSettings:
        return cls(**json.loads(text))


def add_options(parser: argparse.ArgumentParser | argparse._ArgumentGroup, *, prefix: str = "",
                flags: dict[str, str] | None = None, skip: tuple[str, ...] = ()) -> None:
    """One option per field: ``--{prefix}{name}`` (or ``flags[name]``), dest ``{prefix}{name}``
    with dashes as underscores, the field's default, help and choices."""
    for f in fields(ScorerSettings):
        if f.name in skip:
            continue
        meta = f.metadata
        flag = (flags or {}).get(f.name) or f"--{prefix}{f.name.replace('_', '-')}"
        dest = f"{prefix.replace('-', '_')}{f.name}"
        default = None if f.default is MISSING else f.default
        if meta["type"] is bool:
            parser.add_argument(flag, dest=dest, action="store_true", help=meta["help"])
        else:
            parser.add_argument(flag, dest=dest, type=meta["type"], default=default, choices=meta["choices"],
                                help=meta["help"])


def from_namespace(ns: argparse.Namespace, *, prefix: str = "", **overrides: Any) -> ScorerSettings:
    """The settings the options of ``add_options`` parsed to (``ValueError`` when invalid)."""
    dest = prefix.replace("-", "_")
    values = {f.name: getattr(ns, f"{dest}{f.name}") for f in fields(ScorerSettings) if hasattr(ns, f"{dest}{f.name}")}
    return ScorerSettings(**{**values, **overrides})
