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
"""

from __future__ import annotations

import contextlib
import copy
import inspect
import logging
from dataclasses import dataclass
from typing import Sequence

import torch
from transformers import DynamicCache
from transformers.cache_utils import DynamicLayer

from scorer import packed
from scorer.batching import fill, group_ids, prefix_groups
from scorer.encoded import Encoded
from scorer.prefix_cache import PrefixCache

log = logging.getLogger(__name__)
NLL_CLIP = 2.0  # reference: logprobs are clipped to [-2, 0]
MIN_SHARED_PREFIX = 64  # tokens: a shorter shared prefix is not worth a separate cached pass
HOST_MAX_LOGIT_BYTES = 1 << 30  # rows per forward are cut so that their kept logits (as fp32) fit this
LSE_CHUNK_BYTES = 256 << 20  # fp32 logits upcast at a time for the log-sum-exp
HOST_PREFIX_CACHE_BYTES = 1 << 30  # stored prefix caches, in host memory


@dataclass
class EngineStats:
    requests: int = 0
    tokens: int = 0  # tokens of the requests
    forwarded: int = 0  # tokens that went through the model (less, thanks to prefix reuse)
    padded: int = 0  # padding that went through with them (rows of a batch are padded to one length)
    forwards: int = 0
    logit_rows: int = 0  # positions whose logits were computed


class Engine:
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
        self.merge = merge if merge is not None else _full_attention_only(model)
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
                cache = base if n == len(chunks) - 1 else _share(base)
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

    def _score_padded(self, batch: Sequence[Encoded]) -> torch.Tensor:
        B, T = len(batch), max(len(e) for e in batch)
        ids = torch.full((B, T), self.pad_id, dtype=torch.long)
        mask = torch.zeros((B, T), dtype=torch.long)
        for b, e in enumerate(batch):  # left padding: every row ends at T
            ids[b, T - len(e):] = torch.tensor(e.ids)
            mask[b, T - len(e):] = 1
        position_ids = (mask.cumsum(-1) - 1).clamp(min=0)
        # Logits are needed from the earliest predicting position (first scored - 1) to the end.
        keep = max(len(e) - e.limit for e in batch)
        # Row b's token t sits at column t + (T - len) - (T - keep) of the kept logits.
        targets, valid = self._targets(batch, [keep - len(e) - 1 for e in batch], keep)
        logits = self._forward(ids, mask, position_ids, keep).logits  # (B, keep, vocab)
        return self._nll(logits, targets, valid)

    def _prefix(self, e: Encoded, plen: int):
        """A batch-1 KV cache of ``e.ids[:plen]``: from the longest stored prefix, extended; the
        cache up to the last paragraph break on the way is stored for the next step."""
        start, cache = self._stored(e.ids[:plen])
        cache = _share(cache) if cache is not None else None
        if snap := self._snapshot_at(e, start, plen):
            cache = self._extend(cache, e.ids, start, snap)
            stored = _compact(cache)
            self.cache.put(e.ids[:snap], stored, _cache_bytes(stored))
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

    def _score_shared(self, batch: Sequence[Encoded], plen: int, cache) -> torch.Tensor:
        """Score requests sharing their first ``plen`` tokens, whose cache is given: only the
        suffixes run."""
        B = len(batch)
        if B > 1:
            cache.batch_repeat_interleave(B)  # (B, heads, plen, head_dim) per layer
        S = max(len(e) - plen for e in batch)
        ids = torch.full((B, S), self.pad_id, dtype=torch.long)
        mask = torch.zeros((B, plen + S), dtype=torch.long)
        mask[:, :plen] = 1
        for b, e in enumerate(batch):  # right padding: the suffixes start together after the prefix
            ids[b, : len(e) - plen] = torch.tensor(e.ids[plen:])
            mask[b, plen : len(e)] = 1
        position_ids = (plen + torch.arange(S)).expand(B, S)
        keep = max(S - (e.limit - plen) for e in batch)
        # Token t sits at suffix index t - plen, i.e. column t - plen - (S - keep).
        targets, valid = self._targets(batch, [keep - plen - S - 1] * B, keep)
        logits = self._forward(ids, mask, position_ids, keep, cache).logits  # (B, keep, vocab)
        return self._nll(logits, targets, valid)

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

    def _run_rows(self, rows: list[tuple["KV | None", list[int]]], keep: int,
                  want_kv: bool = True) -> tuple[torch.Tensor, list["KV"]]:
        """Run each row's new tokens on top of its own past (None: none), all in one forward.
        Returns the kept logits (B, keep, vocab) and, if ``want_kv``, each row's KV (past +
        new), batch 1: copying them out costs as much again as the merged cache itself."""
        if self.packed:
            return self._run_packed(rows, keep, want_kv)
        B = len(rows)
        plens = [_kv_len(kv) for kv, _ in rows]
        slens = [len(new) for _, new in rows]
        P, S = max(plens), max(slens)
        ids = torch.full((B, S), self.pad_id, dtype=torch.long)
        mask = torch.zeros((B, P + S), dtype=torch.long)
        position_ids = torch.zeros((B, S), dtype=torch.long)
        for b, ((_, new), p, n) in enumerate(zip(rows, plens, slens)):
            ids[b, S - n :] = torch.tensor(new)
            mask[b, P - p : P] = 1
            mask[b, P + S - n :] = 1
            position_ids[b, S - n :] = torch.arange(p, p + n)
        cache = None
        if P:
            cache = DynamicCache(config=self.model.config)
            template = next(kv for kv, _ in rows if kv is not None)
            for layer, (k0, v0) in enumerate(template):
                k = k0.new_zeros((B, k0.shape[1], P + S, k0.shape[3]))  # with room for the new tokens
                v = v0.new_zeros((B, v0.shape[1], P + S, v0.shape[3]))
                for b, ((kv, _), p) in enumerate(zip(rows, plens)):
                    if p:
                        k[b, :, P - p : P] = kv[layer][0][0]
                        v[b, :, P - p : P] = kv[layer][1][0]
                cache.layers[layer] = _RoomLayer(k, v, P)
        out = self._forward(ids, mask, position_ids, keep, cache, keep_cache=want_kv)
        if not want_kv:
            return out.logits, []
        merged = getattr(out, self._cache_arg)
        kvs = []
        for b, (p, n) in enumerate(zip(plens, slens)):
            kvs.append([(torch.cat([layer.keys[b : b + 1, :, P - p : P], layer.keys[b : b + 1, :, P + S - n :]], dim=2),
                         torch.cat([layer.values[b : b + 1, :, P - p : P], layer.values[b : b + 1, :, P + S - n :]], dim=2))
                        for layer in merged.layers])
        return out.logits, kvs

    @torch.inference_mode()
    def _packing_works(self) -> bool:
        """A probe of two short rows: packed, every attention layer must go through the packed
        attention (a model with an attention of its own would silently let the rows see each
        other) and each row must get what it gets alone."""
        rows = [[11, 12, 13, 14, 15], [16, 17, 18]]
        try:
            cache, packing, positions = self._pack([(None, r) for r in rows])
            logits = self._forward_packed(rows, positions, cache, packing, keep=1)
        except Exception as exc:  # whatever this architecture does not support: pad instead
            log.warning("packed rows do not run on this model (%s: %s); its rows are padded", type(exc).__name__, exc)
            return False
        finally:
            self.stats = EngineStats()
        if len(packing.calls) != len(cache.layers):
            log.warning("this model's attention does not go through transformers' attention interface in every "
                        "layer (%d of %d); its rows are padded", len(packing.calls), len(cache.layers))
            return False
        for row, got in zip(rows, logits[:, 0].float()):
            alone = self.model(input_ids=torch.tensor([row], device=self.device), logits_to_keep=1).logits[0, -1].float()
            if not torch.allclose(got, alone, rtol=1e-2, atol=1e-2 * float(alone.abs().max())):
                log.warning("packed rows do not reproduce this model's own forward; its rows are padded")
                return False
        return True

    def _run_packed(self, rows: list[tuple["KV | None", list[int]]], keep: int,
                    want_kv: bool) -> tuple[torch.Tensor, list["KV"]]:
        """``_run_rows`` without padding: the rows end to end in one sequence (``scorer.packed``)."""
        cache, packing, positions = self._pack(rows)
        logits = self._forward_packed([new for _, new in rows], positions, cache, packing, keep)
        if not want_kv:
            return logits, []
        return logits, [[layer.span(ks, ke) for layer in cache.layers] for ks, ke in packing.k]

    def _pack(self, rows: list[tuple["KV | None", list[int]]]):
        """The packed cache (each row's past in place, room for its new tokens), the packing,
        and the new tokens' positions."""
        plens = [_kv_len(kv) for kv, _ in rows]
        q, k, slots, positions = packed.plan([(p, len(new)) for p, (_, new) in zip(plens, rows)])
        heads, dim = self._kv_shape
        slots_dev = self._to_device(torch.tensor(slots))
        cache = DynamicCache(config=self.model.config)
        for layer in range(len(cache.layers)):
            bk = torch.empty((k[-1][1], heads, dim), dtype=self.dtype, device=self.device)  # every slot is written
            bv = torch.empty_like(bk)
            for (kv, _), (ks, _), p in zip(rows, k, plens):
                if p:
                    bk[ks : ks + p] = kv[layer][0][0].transpose(0, 1)
                    bv[ks : ks + p] = kv[layer][1][0].transpose(0, 1)
            cache.layers[layer] = packed.PackedLayer(bk, bv, slots_dev)
        cu = lambda spans: self._to_device(torch.tensor([0] + [e for _, e in spans], dtype=torch.int32))  # noqa: E731
        packing = packed.Packing(q, k, cu(q), cu(k), max(e - s for s, e in q), max(e - s for s, e in k))
        return cache, packing, positions

    def _forward_packed(self, news: list[list[int]], positions: list[int], cache, packing: "packed.Packing",
                        keep: int) -> torch.Tensor:
        """The packed forward; the kept logits (rows, keep, vocab) are gathered at each row's
        last ``keep`` positions (a short row's extra columns read its neighbour's and are never
        valid targets)."""
        ids = torch.tensor([[t for new in news for t in new]])
        cols = torch.tensor([max(0, qe - keep + j) for _, qe in packing.q for j in range(keep)])
        out = self._forward(ids, None, torch.tensor([positions]), self._to_device(cols), cache, packing=packing)
        return out.logits.view(len(news), keep, -1)

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
        """Clipped mean NLL per row over the ``valid`` columns; stays on the device."""
        B, K, V = logits.shape
        flat = logits.reshape(B * K, V)
        step = max(1, LSE_CHUNK_BYTES // (V * 4))
        lse = torch.cat([torch.logsumexp(flat[i : i + step].float(), dim=-1) for i in range(0, B * K, step)])
        picked = flat.gather(-1, targets.reshape(-1, 1))[:, 0].float()
        nll = (lse - picked).clamp(max=NLL_CLIP).reshape(B, K)
        return torch.where(valid, nll, 0.0).sum(-1) / valid.sum(-1)  # padding columns may hold NaN

    def _to_device(self, t: torch.Tensor) -> torch.Tensor:
        if self.device.type == "cuda":
            return t.contiguous().pin_memory().to(self.device, non_blocking=True)
        return t.to(self.device)


class _RoomLayer(DynamicLayer):
    """A full-attention cache layer allocated with room for a forward's new tokens: ``update``
    writes them in place, where ``DynamicLayer`` would concatenate (copying the whole past
    again, in every layer, on every forward)."""

    def __init__(self, keys: torch.Tensor, values: torch.Tensor, filled: int):
        super().__init__()
        self.keys, self.values, self.filled = keys, values, filled
        self.device, self.is_initialized = keys.device, True

    def update(self, key_states, value_states, *args, **kwargs):
        end = self.filled + key_states.shape[-2]
        if end > self.keys.shape[-2]:
            raise ValueError(f"{end} tokens do not fit a cache layer allocated for {self.keys.shape[-2]}")
        self.keys[..., self.filled : end, :] = key_states
        self.values[..., self.filled : end, :] = value_states
        self.filled = end
        return self.keys[..., :end, :], self.values[..., :end, :]

    def get_seq_length(self) -> int:
        return self.filled


KV = list  # a batch-1 KV cache as [(keys, values)] per layer, each (1, kv_heads, length, head_dim)


def _kv_len(kv) -> int:
    return 0 if kv is None else kv[0][0].shape[2]


def _full_attention_only(model) -> bool:
    """Whether every layer's cache is a plain growing one (no sliding window, no linear
    attention): then caches of any lengths can be padded and merged into one batch."""
    try:
        cache = DynamicCache(config=model.config)
    except Exception:
        return False
    return bool(cache.layers) and all(type(layer) is DynamicLayer for layer in cache.layers)


def _share(cache):
    """A new cache object over the same tensors. Dynamic cache layers replace their tensors on
    update (concatenate, slice, repeat), never write into them, so the original stays intact."""
    new = copy.copy(cache)
    new.layers = [copy.copy(layer) for layer in cache.layers]
    return new


def _compact(cache):
    """A copy holding its own compact tensors (a sliding layer's states may view a larger one)."""
    new = _share(cache)
    for layer in new.layers:
        for name in ("keys", "values"):
            t = getattr(layer, name, None)
            if isinstance(t, torch.Tensor):
                setattr(layer, name, t.clone())
    return new


def _cache_bytes(cache) -> int:
    return sum(t.numel() * t.element_size() for layer in cache.layers for name in ("keys", "values")
               if isinstance(t := getattr(layer, name, None), torch.Tensor))


def default_prefix_cache_bytes(device: torch.device) -> int:
    """A tenth of the GPU's memory on CUDA (the KV of a 2K-token prefix of an 8B model is
    256 MB), 1 GiB in host memory otherwise."""
    return _share_of_gpu(device, 10) or HOST_PREFIX_CACHE_BYTES


def default_max_logit_bytes(device: torch.device) -> int:
    """How many kept logits (as fp32) one forward may make: a sixteenth of the GPU's memory on
    CUDA, 1 GiB in host memory. A row of a 128K-token vocabulary with a 500-token answer keeps
    256 MB: on CUDA 1 GiB would cut a step of 32 candidates into 9 small forwards (a GPU is
    efficient from tens of thousands of tokens per forward); 9.3 GB on an H200 runs it in one."""
    return _share_of_gpu(device, 16) or HOST_MAX_LOGIT_BYTES


def _share_of_gpu(device: torch.device, parts: int) -> int:
    """1/parts of the GPU's memory on CUDA; 0 elsewhere."""
    return torch.cuda.get_device_properties(device).total_memory // parts if device.type == "cuda" else 0


def is_oom(exc: BaseException) -> bool:
    return isinstance(exc, torch.OutOfMemoryError) or "out of memory" in str(exc).lower()
