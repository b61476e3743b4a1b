"""The scoring model: clipped mean NLL of the scored answer span, batched. Torch lives here.

For one scoring text of T tokens with scored positions P (|P| = K):

    logits at positions p-1 for p in P   (B, K', vocab)    # only the tail, never (T, vocab)
    lp[p]  = log_softmax(logits[p-1])[ids[p]]
    score  = mean_p  -clip(lp[p], -2, 0)  = mean_p min(-lp[p], 2)

Batches are left-padded so that every row's answer sits at the end; the model is then asked for
the logits of the last K' positions only (``logits_to_keep``, its own head path, so soft-capping
and scaling stay right for every architecture). Explicit ``position_ids`` make a padded row
compute exactly what it computes alone.

Requests that share a long token prefix (the candidates of one search step share the prompt and
every kept segment) are scored against that prefix's KV cache, computed once: the prefix runs
alone, its cache is repeated for each sharer, and only the suffixes (candidate, later segments,
answer) run as a right-padded batch. Causal attention makes this exact.
"""

from __future__ import annotations

import inspect
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import torch

from prompts import PromptSet, render_chat
from scorer.batching import group_ids, prefix_groups
from scorer.errors import ModelLoadError, ScoringInputError
from scorer.loading import resolve_model
from scorer.span import SYSTEM_PROMPT, scored_positions, scoring_text

NLL_CLIP = 2.0  # reference: logprobs are clipped to [-2, 0]
MIN_SHARED_PREFIX = 64  # tokens: a shorter shared prefix is not worth a separate cached pass
MAX_LOGIT_BYTES = 1 << 30  # rows per forward are cut so that their kept logits stay under 1 GiB


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
                 chat_format: str | None = None, prompts_dir: Path | None = None, max_context: int | None = None,
                 reuse_prefix: bool = True):
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
        self.reuse_prefix = reuse_prefix
        self.prompts = PromptSet(prompts_dir)
        self.chat_format = chat_format or self._fallback_format()
        cfg = self.model.config
        self.max_context = max_context or getattr(cfg, "max_position_embeddings", None)
        self.pad_id = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0
        # transformers >= 5.24 names the KV-cache argument `cache`; older ones `past_key_values`.
        params = inspect.signature(self.model.forward).parameters
        self._cache_arg = "cache" if "cache" in params else "past_key_values"

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

    @property
    def _min_prefix(self) -> int:
        return MIN_SHARED_PREFIX if self.reuse_prefix else 1 << 62

    def groups(self, batch: Sequence[Encoded]) -> list[int]:
        """Which requests share a prefix: batches are cut so that sharers stay together."""
        return group_ids([e.ids for e in batch], [e.positions[0] - 1 for e in batch], self._min_prefix)

    @torch.inference_mode()
    def score(self, batch: Sequence[Encoded]) -> list[float]:
        """Scores of a batch, each what it would be alone; sharers of a prefix reuse its cache."""
        groups = prefix_groups([e.ids for e in batch], [e.positions[0] - 1 for e in batch], self._min_prefix)
        scores: list[float] = [0.0] * len(batch)
        alone = [i for plen, members in groups if not plen for i in members]
        runs = [(0, chunk) for chunk in self._by_logit_budget(alone, batch)]
        runs += [(plen, chunk) for plen, members in groups if plen for chunk in self._by_logit_budget(members, batch)]
        for plen, members in runs:
            rows = [batch[i] for i in members]
            values = self._score_shared(rows, plen) if plen and len(rows) > 1 else self._score_padded(rows)
            for i, v in zip(members, values):
                scores[i] = v
        return scores

    def _by_logit_budget(self, members: list[int], batch: Sequence[Encoded]) -> list[list[int]]:
        """Cut rows so that (rows x kept positions x vocab) fp32 logits fit MAX_LOGIT_BYTES."""
        vocab = self.model.config.vocab_size
        chunks: list[list[int]] = []
        for i in members:
            keep = len(batch[i]) - batch[i].positions[0] + 1
            if chunks and (len(chunks[-1]) + 1) * keep * vocab * 4 <= MAX_LOGIT_BYTES:
                chunks[-1].append(i)
            else:
                chunks.append([i])
        return chunks

    def _score_padded(self, batch: Sequence[Encoded]) -> list[float]:
        B, T = len(batch), max(len(e) for e in batch)
        ids = torch.full((B, T), self.pad_id, dtype=torch.long)
        mask = torch.zeros((B, T), dtype=torch.long)
        for b, e in enumerate(batch):  # left padding: every row ends at T
            ids[b, T - len(e):] = torch.tensor(e.ids)
            mask[b, T - len(e):] = 1
        position_ids = (mask.cumsum(-1) - 1).clamp(min=0)
        # Logits are needed from the earliest predicting position (first scored - 1) to the end.
        keep = max(len(e) - (e.positions[0] - 1) for e in batch)
        logits = self._forward(ids, mask, position_ids, keep)  # (B, keep, vocab)
        # Row b's token t sits at column t + (T - len) - (T - keep) of the kept logits.
        return self._nll(logits, [[p - 1 + keep - len(e) for p in e.positions] for e in batch], batch)

    def _score_shared(self, batch: Sequence[Encoded], plen: int) -> list[float]:
        """Score requests sharing their first ``plen`` tokens: the prefix once, then the suffixes."""
        B = len(batch)
        prefix = torch.tensor([batch[0].ids[:plen]], device=self.device)
        cache = self.model(input_ids=prefix, use_cache=True, logits_to_keep=1).past_key_values
        cache.batch_repeat_interleave(B)  # (B, heads, plen, head_dim) per layer
        S = max(len(e) - plen for e in batch)
        ids = torch.full((B, S), self.pad_id, dtype=torch.long)
        mask = torch.zeros((B, plen + S), dtype=torch.long)
        mask[:, :plen] = 1
        for b, e in enumerate(batch):  # right padding: the suffixes start together after the prefix
            ids[b, : len(e) - plen] = torch.tensor(e.ids[plen:])
            mask[b, plen : len(e)] = 1
        position_ids = (plen + torch.arange(S)).expand(B, S)
        keep = max(S - (e.positions[0] - 1 - plen) for e in batch)
        logits = self._forward(ids, mask, position_ids, keep, cache)  # (B, keep, vocab)
        # Token t sits at suffix index t - plen, i.e. column t - plen - (S - keep).
        return self._nll(logits, [[p - 1 - plen - S + keep for p in e.positions] for e in batch], batch)

    def _forward(self, ids, mask, position_ids, keep: int, cache=None) -> torch.Tensor:
        dev = self.device
        extra = {self._cache_arg: cache, "use_cache": True} if cache is not None else {"use_cache": False}
        out = self.model(input_ids=ids.to(dev, non_blocking=True), attention_mask=mask.to(dev, non_blocking=True),
                         position_ids=position_ids.to(dev, non_blocking=True), logits_to_keep=keep, **extra)
        return out.logits

    def _nll(self, logits: torch.Tensor, columns: list[list[int]], batch: Sequence[Encoded]) -> list[float]:
        """Clipped mean NLL per row; ``columns[b]`` are the logit columns predicting row b's scored tokens."""
        scores = []
        for b, e in enumerate(batch):
            cols = columns[b]
            # The scored span is contiguous: a slice is a view, where indexing would copy (K, vocab).
            if cols == list(range(cols[0], cols[0] + len(cols))):
                rows = logits[b, cols[0] : cols[0] + len(cols)]
            else:
                rows = logits[b, torch.tensor(cols, device=self.device)]
            rows = rows.float()  # (K, vocab); no copy in fp32
            target = torch.tensor([e.ids[p] for p in e.positions], device=self.device)
            lp = rows.gather(-1, target[:, None])[:, 0] - torch.logsumexp(rows, dim=-1)  # (K,) log-probs
            scores.append((-lp).clamp(max=NLL_CLIP).mean())
        return torch.stack(scores).tolist()  # one host sync for the whole batch


def is_oom(exc: BaseException) -> bool:
    return isinstance(exc, torch.OutOfMemoryError) or "out of memory" in str(exc).lower()


def default_threads() -> int:
    return max(1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1))
