"""The scoring model: clipped mean NLL of the scored answer span, batched. Torch lives here.

For one scoring text of T tokens with scored positions P (|P| = K):

    logits at positions p-1 for p in P   (B, K', vocab)    # only the tail, never (T, vocab)
    lp[p]  = log_softmax(logits[p-1])[ids[p]]
    score  = mean_p  -clip(lp[p], -2, 0)  = mean_p min(-lp[p], 2)

Batches are left-padded so that every row's answer sits at the end; the model is then asked for
the logits of the last K' positions only (``logits_to_keep``, its own head path, so soft-capping
and scaling stay right for every architecture). Explicit ``position_ids`` make a padded row
compute exactly what it computes alone.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import torch

from prompts import PromptSet, render_chat
from scorer.errors import ModelLoadError, ScoringInputError
from scorer.loading import resolve_model
from scorer.span import SYSTEM_PROMPT, scored_positions, scoring_text

NLL_CLIP = 2.0  # reference: logprobs are clipped to [-2, 0]


@dataclass(frozen=True)
class Encoded:
    """One scoring request, tokenized: the ids and the positions whose tokens are scored."""

    ids: list[int]
    positions: list[int]

    def __len__(self) -> int:
        return len(self.ids)


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
                 chat_format: str | None = None, prompts_dir: Path | None = None, max_context: int | None = None):
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
        self.name = spec
        self.prompts = PromptSet(prompts_dir)
        self.chat_format = chat_format or self._fallback_format()
        cfg = self.model.config
        self.max_context = max_context or getattr(cfg, "max_position_embeddings", None)
        self.pad_id = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0

    def _fallback_format(self) -> str | None:
        if self.tokenizer.chat_template:
            return None  # the tokenizer's own template
        return "gemma" if self.model.config.model_type.startswith("gemma") else "plain"

    # --- text -> tokens -------------------------------------------------------------------

    def prompt(self, question: str, lang: str) -> str:
        messages = [
            {"role": "system", "content": SYSTEM_PROMPT},
            {"role": "user", "content": self.prompts.render("standard_inference", lang, question=question)},
        ]
        if self.chat_format is None:
            return self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        return (self.tokenizer.bos_token or "") + render_chat(messages, self.chat_format)

    def encode(self, question: str, thinking: str, answer: str, lang: str) -> Encoded:
        st = scoring_text(self.prompt(question, lang), thinking, answer)
        # The chat template already holds any BOS, so no special tokens are added here.
        enc = self.tokenizer(st.text, add_special_tokens=False, return_offsets_mapping=True)
        ids = enc["input_ids"]
        if self.max_context and len(ids) > self.max_context:
            raise ScoringInputError(f"scoring text is {len(ids)} tokens, over the scorer's context of {self.max_context}")
        positions = scored_positions(enc["offset_mapping"], st.span)
        if not positions:
            raise ScoringInputError("the answer's scored span holds no tokens")
        return Encoded(ids, positions)

    # --- tokens -> scores -----------------------------------------------------------------

    @torch.inference_mode()
    def score(self, batch: Sequence[Encoded]) -> list[float]:
        """Scores of a batch, each exactly what it would be alone."""
        B, T = len(batch), max(len(e) for e in batch)
        ids = torch.full((B, T), self.pad_id, dtype=torch.long)
        mask = torch.zeros((B, T), dtype=torch.long)
        for b, e in enumerate(batch):  # left padding: every row ends at T
            ids[b, T - len(e):] = torch.tensor(e.ids)
            mask[b, T - len(e):] = 1
        position_ids = (mask.cumsum(-1) - 1).clamp(min=0)
        # Logits are needed from the earliest predicting position (first scored - 1) to the end.
        keep = max(len(e) - (e.positions[0] - 1) for e in batch)
        out = self.model(
            input_ids=ids.to(self.device, non_blocking=True),
            attention_mask=mask.to(self.device, non_blocking=True),
            position_ids=position_ids.to(self.device, non_blocking=True),
            logits_to_keep=keep,
            use_cache=False,
        )
        logits = out.logits  # (B, keep, vocab): position T-keep+j predicts token T-keep+j+1
        scores = []
        for b, e in enumerate(batch):
            shift = T - len(e) - (T - keep)  # row index -> column in the kept logits
            pred = torch.tensor([shift + p - 1 for p in e.positions], device=self.device)
            target = torch.tensor([e.ids[p] for p in e.positions], device=self.device)
            lp = torch.log_softmax(logits[b, pred].float(), dim=-1).gather(-1, target[:, None])[:, 0]  # (K,)
            scores.append((-lp).clamp(max=NLL_CLIP).mean())
        return torch.stack(scores).tolist()  # one host sync for the whole batch


def is_oom(exc: BaseException) -> bool:
    return isinstance(exc, torch.OutOfMemoryError) or "out of memory" in str(exc).lower()


def default_threads() -> int:
    return max(1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1))
