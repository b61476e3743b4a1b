"""The scoring model: a transformers causal LM and its tokenizer, loaded for ``Engine``.

Text in, tokens out through ``scorer.encoder``; the torch work of scoring is ``scorer.engine``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

import torch

from scorer.compiled import compile_blocks
from scorer.encoded import Encoded
from scorer.engine import Engine
from scorer.encoder import Encoder, default_chat_format
from scorer.errors import ModelLoadError
from scorer.loading import resolve_model


def pick_device(device: str | None) -> torch.device:
    if device:
        return torch.device(device)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def pick_dtype(dtype: str, device: torch.device) -> torch.dtype:
    if dtype == "auto":
        return torch.bfloat16 if device.type == "cuda" else torch.float32
    return {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}[dtype]


class ScoringModel:
    def __init__(self, spec: str, *, device: str | None = None, dtype: str = "auto", threads: int | None = None,
                 chat_format: str | None = None, prompts_dir: Path | None = None, max_context: int | None = None,
                 reuse_prefix: bool = True, prefix_cache_bytes: int | None = None, compile: bool = False,
                 scoring_prompt: str = "brief", single_segment_answer: str = "whole"):
        from transformers import AutoModelForCausalLM, AutoTokenizer

        if threads:
            torch.set_num_threads(threads)
        self.device = pick_device(device)
        self.dtype = pick_dtype(dtype, self.device)
        path = resolve_model(spec)
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(path)
            self.model = AutoModelForCausalLM.from_pretrained(path, dtype=self.dtype).to(self.device).eval()
        except (OSError, ValueError) as exc:
            raise ModelLoadError(f"cannot load the scoring model {spec!r}: {exc}") from exc
        if not self.tokenizer.is_fast:
            raise ModelLoadError(f"{spec!r} has no fast tokenizer: reer needs offset mappings to find the answer span")
        if compile:
            try:
                compile_blocks(self.model)
            except Exception as exc:  # no C++ compiler for the CPU backend, no triton, an unsupported block
                raise ModelLoadError(f"cannot compile {spec!r} (--compile): {type(exc).__name__}: {exc}") from exc
        self.name = spec
        cfg = self.model.config
        self.encoder = Encoder(self.tokenizer, chat_format=chat_format or default_chat_format(self.tokenizer,
                                                                                              cfg.model_type),
                               prompts_dir=prompts_dir, scoring_prompt=scoring_prompt,
                               max_context=max_context or getattr(cfg, "max_position_embeddings", None),
                               single_segment_answer=single_segment_answer)
        self.max_context = self.encoder.max_context
        pad_id = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0
        self.engine = Engine(self.model, pad_id=pad_id, reuse_prefix=reuse_prefix,
                             prefix_cache_bytes=prefix_cache_bytes)

    # --- text -> tokens -------------------------------------------------------------------

    def encode(self, question: str, thinking: str, answer: str, lang: str) -> Encoded:
        return self.encoder.encode(question, thinking, answer, lang)

    # --- tokens -> scores -----------------------------------------------------------------

    def groups(self, batch: Sequence[Encoded]) -> list[int]:
        return self.engine.groups(batch)

    def score(self, batch: Sequence[Encoded]) -> list[float]:
        return self.engine.score(batch)


def default_threads() -> int:
    return max(1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1))
