"""Tokens to scores on a causal LM: clipped mean NLL of the scored span, batched. Torch lives here.

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
answer) run as a right-padded batch. Causal attention makes this exact. The cache of the
prefix up to its last paragraph break is kept in an LRU (``PrefixCache``): the next step of the
same record starts from it and computes only the segment that step adds.

On CUDA the inputs of a forward are built on the host, pinned and copied without blocking, and
the scores of a whole call are read back once at the end: nothing waits on the GPU in between
(tests/support/host_sync.py finds such waits on a CPU).

Here: the dispatch (``score``), the prefix caches kept across calls, and the merged path. The
row layouts are ``scorer.rows_padded`` and ``scorer.rows_packed`` (mixins of ``Engine``), the
KV-cache helpers ``scorer.kv``, the loss ``scorer.loss``, the device budgets ``scorer.devices``.
"""

from __future__ import annotations

import contextlib
import inspect
import logging
from dataclasses import dataclass
from typing import Sequence

import torch

from scorer import packed
from scorer.batching import fill, group_ids, prefix_groups
from scorer.devices import default_max_logit_bytes, default_prefix_cache_bytes
from scorer.encoded import Encoded
from scorer.kv import KV, cache_bytes, compact, full_attention_only, share
from scorer.loss import clipped_nll
from scorer.prefix_cache import PrefixCache
from scorer.rows_packed import PackedRows
from scorer.rows_padded import PaddedRows

log = logging.getLogger(__name__)
MIN_SHARED_PREFIX = 64  # tokens: a shorter shared prefix is not worth a separate cached pass


@dataclass
class EngineStats:
    requests: int = 0
    tokens: int = 0  # tokens of the requests
    forwarded: int = 0  # tokens that went through the model (less, thanks to prefix reuse)
    padded: int = 0  # padding that went through with them (rows of a batch are padded to one length)
    forwards: int = 0
    logit_rows: int = 0  # positions whose logits were computed


class Engine(PaddedRows, PackedRows):
    """Scores ``Encoded`` requests with ``model`` (a transformers causal LM, already placed)."""

    def __init__(self, model, *, pad_id: int = 0, reuse_prefix: bool = True,
                 prefix_cache_bytes: int | None = None, merge: bool | None = None, packed_rows: bool | None = None,
                 max_logit_bytes: int | None = None):
        self.model = model
        self.device = next(model.parameters()).device
        self.dtype = next(model.parameters()).dtype
        self.vocab = model.config.get_text_config().vocab_size
        self.pad_id = pad_id
        self.reuse_prefix = reuse_prefix
        if prefix_cache_bytes is None:
            prefix_cache_bytes = default_prefix_cache_bytes(self.device)
        self.cache: PrefixCache | None = PrefixCache(prefix_cache_bytes) if reuse_prefix and prefix_cache_bytes > 0 else None
        self.max_logit_bytes = default_max_logit_bytes(self.device) if max_logit_bytes is None else max_logit_bytes
        self.stats = EngineStats()
        # transformers >= 5.24 names the KV-cache argument `cache`; older ones `past_key_values`.
        params = inspect.signature(model.forward).parameters
        self._cache_arg = "cache" if "cache" in params else "past_key_values"
        self.merge = merge if merge is not None else full_attention_only(model)
        text = model.config.get_text_config()
        self._kv_shape = (text.num_key_value_heads,
                          getattr(text, "head_dim", None) or text.hidden_size // text.num_attention_heads)
        # Packed rows (no padding) need the merged path and a model that attends through
        # transformers' attention interface.
        self.packed = self.merge and (packed_rows if packed_rows is not None else self._packing_works())

    @property
    def _min_prefix(self) -> int:
        return MIN_SHARED_PREFIX if self.reuse_prefix else 1 << 62

    def groups(self, batch: Sequence[Encoded]) -> list[int]:
        """Which requests share a prefix: batches are cut so that sharers stay together."""
        return group_ids([e.ids for e in batch], [e.limit for e in batch], self._min_prefix)

    def snapshot(self) -> dict:
        s = self.stats
        out = {"requests": s.requests, "tokens": s.tokens, "forwarded": s.forwarded, "padded": s.padded,
               "forwards": s.forwards, "logit_rows": s.logit_rows}
        if self.cache is not None:
            c = self.cache.stats
            out["prefix_cache"] = {"entries": len(self.cache), "bytes": self.cache.bytes, "hits": c.hits,
                                   "misses": c.misses, "tokens_reused": c.tokens_reused, "evictions": c.evictions}
        return out

    # --- scoring --------------------------------------------------------------------------

    @torch.inference_mode()
    def score(self, batch: Sequence[Encoded]) -> list[float]:
        """Scores of a batch, each what it would be alone; sharers of a prefix reuse its cache."""
        groups = prefix_groups([e.ids for e in batch], [e.limit for e in batch], self._min_prefix)
        parts: list[tuple[list[int], torch.Tensor]] = []  # (indices, scores on the device)
        alone: list[int] = []
        shared: list[tuple[int, list[int]]] = []
        for plen, members in groups:
            if not plen:  # a lone request: a stored prefix of it may still be reused
                e = batch[members[0]]
                if self.cache is not None and self.cache.longest(e.ids[: e.limit]) >= MIN_SHARED_PREFIX:
                    plen = e.limit
                elif not self.merge:  # merged, it is a group of no prefix: its row runs whole with the suffixes
                    alone.append(members[0])
                    continue
            shared.append((plen, members))
        if self.merge and shared:
            parts += self._score_merged(batch, shared)
        for plen, members in [] if self.merge else shared:
            base = self._prefix(batch[members[0]], plen)
            chunks = self._by_logit_budget(members, batch)
            for n, chunk in enumerate(chunks):
                cache = base if n == len(chunks) - 1 else share(base)
                parts.append((chunk, self._score_shared([batch[i] for i in chunk], plen, cache)))
        for chunk in self._by_logit_budget(alone, batch):
            parts.append((chunk, self._score_padded([batch[i] for i in chunk])))
        self.stats.requests += len(batch)
        self.stats.tokens += sum(len(e) for e in batch)
        scores: list[float] = [0.0] * len(batch)
        if parts:
            values = torch.cat([v for _, v in parts]).tolist()  # the one host sync of the call
            for i, v in zip((i for idx, _ in parts for i in idx), values):
                scores[i] = v
        return scores

    def _by_logit_budget(self, members: list[int], batch: Sequence[Encoded]) -> list[list[int]]:
        """Cut rows so that (rows x kept positions x vocab) fp32 logits fit ``max_logit_bytes``."""
        keep = {i: (len(batch[i]) - batch[i].limit) * self.vocab * 4 for i in members}
        return fill(members, keep, self.max_logit_bytes)

    def _prefix(self, e: Encoded, plen: int):
        """A batch-1 KV cache of ``e.ids[:plen]``: from the longest stored prefix, extended; the
        cache up to the last paragraph break on the way is stored for the next step."""
        start, cache = self._stored(e.ids[:plen])
        cache = share(cache) if cache is not None else None
        if snap := self._snapshot_at(e, start, plen):
            cache = self._extend(cache, e.ids, start, snap)
            stored = compact(cache)
            self.cache.put(e.ids[:snap], stored, cache_bytes(stored))
            start = snap
        if start < plen:
            cache = self._extend(cache, e.ids, start, plen)
        return cache

    def _stored(self, ids: list[int]) -> tuple[int, object]:
        """The longest stored prefix of ``ids``: (its length, its cache), or (0, None) (also for
        no ids: a group of no prefix is not a lookup that missed)."""
        return self.cache.lookup(ids) if self.cache is not None and ids else (0, None)

    def _snapshot_at(self, e: Encoded, start: int, plen: int) -> int:
        """Where to keep a cache on the way from ``start`` to ``plen``: the last paragraph break
        in between (0: none, or no cache to keep it in)."""
        if self.cache is None:
            return 0
        return max((b for b in e.breaks if start < b <= plen and b >= MIN_SHARED_PREFIX), default=0)

    def _extend(self, cache, ids: list[int], start: int, end: int):
        """Run ``ids[start:end]`` on top of ``cache`` (None: from scratch); returns the cache."""
        out = self._forward(torch.tensor([ids[start:end]]), None, torch.arange(start, end)[None], 1, cache,
                            keep_cache=True)
        return getattr(out, self._cache_arg)

    # --- full-attention models: every group of a call in one forward ----------------------

    def _score_merged(self, batch: Sequence[Encoded], shared: list[tuple[int, list[int]]]):
        """All prefix groups of a call together: one forward extends every group's stored prefix
        to its shared length, one forward (per logit budget) runs every member's suffix on its
        group's prefix. Rows are laid out as [pad | past | pad | new]: each row's past is
        right-aligned to the longest past and its new tokens to the end, so that the answers
        line up at the end and the kept logits are the same columns for every row. A group of
        no prefix (a lone request with nothing stored) runs whole, beside the suffixes."""
        found = [self._stored(batch[members[0]].ids[:plen]) for plen, members in shared]
        starts: list[int] = [start for start, _ in found]
        prefixes: list[KV | None] = [kv for _, kv in found]
        todo = [g for g, (plen, _) in enumerate(shared) if starts[g] < plen]
        if todo:
            heads = [batch[shared[g][1][0]] for g in todo]
            _, kvs = self._run_rows([(prefixes[g], e.ids[starts[g] : shared[g][0]]) for g, e in zip(todo, heads)], keep=1)
            for g, e, kv in zip(todo, heads, kvs):
                prefixes[g] = kv
                if snap := self._snapshot_at(e, starts[g], shared[g][0]):
                    stored = [(k[..., :snap, :].clone(), v[..., :snap, :].clone()) for k, v in kv]
                    self.cache.put(e.ids[:snap], stored, sum(k.nbytes + v.nbytes for k, v in stored))
        of = {i: g for g, (_, members) in enumerate(shared) for i in members}
        parts = []
        for chunk in self._by_logit_budget([i for _, members in shared for i in members], batch):
            rows = [batch[i] for i in chunk]
            keep = max(len(e) - e.limit for e in rows)
            targets, valid = self._targets(rows, [keep - len(e) - 1 for e in rows], keep)
            logits, _ = self._run_rows([(prefixes[of[i]], batch[i].ids[shared[of[i]][0]:]) for i in chunk], keep,
                                       want_kv=False)
            parts.append((chunk, self._nll(logits, targets, valid)))
        return parts

    def _run_rows(self, rows: list[tuple[KV | None, list[int]]], keep: int,
                  want_kv: bool = True) -> tuple[torch.Tensor, list[KV]]:
        """Run each row's new tokens on top of its own past (None: none), all in one forward.
        Returns the kept logits (B, keep, vocab) and, if ``want_kv``, each row's KV (past +
        new), batch 1: copying them out costs as much again as the merged cache itself."""
        if self.packed:
            return self._run_packed(rows, keep, want_kv)
        return self._run_padded(rows, keep, want_kv)

    def _targets(self, batch: Sequence[Encoded], shift: list[int], keep: int) -> tuple[torch.Tensor, torch.Tensor]:
        """For each row, the token each kept logit column must predict, and which columns count:
        scored token p is predicted by column p + shift[b]."""
        targets = torch.zeros((len(batch), keep), dtype=torch.long)
        valid = torch.zeros((len(batch), keep), dtype=torch.bool)
        for b, e in enumerate(batch):
            cols = torch.tensor(e.positions) + shift[b]
            targets[b, cols] = torch.tensor([e.ids[p] for p in e.positions])
            valid[b, cols] = True
        return self._to_device(targets), self._to_device(valid)

    def _forward(self, ids, mask, position_ids, keep: int | torch.Tensor, cache=None, keep_cache: bool = False,
                 packing: packed.Packing | None = None):
        """One forward of ``ids`` (B, S) on top of ``cache``, logits for the last ``keep``
        positions (or at the positions ``keep`` lists); ``mask`` (B, past + S) or None for no
        padding; ``packing``: the rows packed in one sequence. Counts what went through."""
        extra = {self._cache_arg: cache} if cache is not None else {}
        if mask is not None:
            extra["attention_mask"] = self._to_device(mask)
        if packing is not None:
            extra["reer_packing"] = packing
        with packed.attention(self.model) if packing is not None else contextlib.nullcontext():
            out = self.model(input_ids=self._to_device(ids), position_ids=self._to_device(position_ids),
                             use_cache=cache is not None or keep_cache, logits_to_keep=keep, **extra)
        self.stats.forwards += 1
        real = ids.numel() if mask is None else int(mask[:, -ids.shape[1]:].sum())
        self.stats.forwarded += real
        self.stats.padded += ids.numel() - real
        self.stats.logit_rows += keep.numel() if isinstance(keep, torch.Tensor) else ids.shape[0] * keep
        return out

    def _nll(self, logits: torch.Tensor, targets: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        return clipped_nll(logits, targets, valid)

    def _to_device(self, t: torch.Tensor) -> torch.Tensor:
        if self.device.type == "cuda":
            return t.contiguous().pin_memory().to(self.device, non_blocking=True)
        return t.to(self.device)
