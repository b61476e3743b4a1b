"""The scoring model: a transformers causal LM and its tokenizer, loaded for ``Engine``.

Text in, tokens out: the scoring text (the reference's prompt, thinking and answer), its scored
positions and its paragraph breaks. The torch work of scoring is ``scorer.engine``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

import torch

from prompts import SCORING_PROMPTS, PromptSet, render_chat
from scorer.compiled import compile_blocks
from scorer.encoded import Encoded
from scorer.engine import Engine
from scorer.errors import ModelLoadError, ScoringInputError
from scorer.loading import resolve_model
from prompts.tags import SYSTEM_PROMPT
from scorer.span import scored_positions, scoring_text, token_starts


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
        self.prompts = PromptSet(prompts_dir)
        self.prompt_name = SCORING_PROMPTS[scoring_prompt]
        self.single_segment_answer = single_segment_answer
        self.chat_format = chat_format or self._fallback_format()
        cfg = self.model.config
        self.max_context = max_context or getattr(cfg, "max_position_embeddings", None)
        # No token stands for more characters than its vocabulary entry has (byte-level and
        # SentencePiece alike), so a text longer than this cannot fit the context whatever it
        # says: refused without tokenizing it, which for a hostile multi-megabyte text costs
        # seconds and gigabytes.
        self.max_token_chars = max(map(len, self.tokenizer.get_vocab()), default=1)
        pad_id = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0
        self.engine = Engine(self.model, pad_id=pad_id, reuse_prefix=reuse_prefix,
                             prefix_cache_bytes=prefix_cache_bytes)

    def _fallback_format(self) -> str | None:
        if self.tokenizer.chat_template:
            return None  # the tokenizer's own template
        return "gemma" if self.model.config.model_type.startswith("gemma") else "plain"

    # --- text -> tokens -------------------------------------------------------------------

    def prompt(self, question: str, lang: str) -> str:
        messages = [
            {"role": "system", "content": SYSTEM_PROMPT},
            {"role": "user", "content": self.prompts.render(self.prompt_name, lang, question=question)},
        ]
        if self.chat_format is None:
            return self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        return (self.tokenizer.bos_token or "") + render_chat(messages, self.chat_format)

    def encode(self, question: str, thinking: str, answer: str, lang: str) -> Encoded:
        st = scoring_text(self.prompt(question, lang), thinking, answer, self.single_segment_answer)
        if self.max_context and len(st.text) > self.max_context * self.max_token_chars:
            raise ScoringInputError(f"scoring text is {len(st.text)} characters: over the scorer's context of "
                                    f"{self.max_context} tokens however it is tokenized")
        # The chat template already holds any BOS, so no special tokens are added here.
        enc = self.tokenizer(st.text, add_special_tokens=False, return_offsets_mapping=True)
        ids = enc["input_ids"]
        if self.max_context and len(ids) > self.max_context:
            raise ScoringInputError(f"scoring text is {len(ids)} tokens, over the scorer's context of {self.max_context}")
        positions = scored_positions(enc["offset_mapping"], st.span)
        if not positions:
            raise ScoringInputError("the answer's scored span holds no tokens")
        return Encoded(ids, positions, token_starts(enc["offset_mapping"], st.breaks))

    # --- tokens -> scores -----------------------------------------------------------------

    def groups(self, batch: Sequence[Encoded]) -> list[int]:
        return self.engine.groups(batch)

    def score(self, batch: Sequence[Encoded]) -> list[float]:
        return self.engine.score(batch)


def default_threads() -> int:
    return max(1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1))
