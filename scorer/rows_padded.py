"""Rows of a forward, padded: the engine's layout for models that cannot pack their rows
(sliding-window attention, architectures that bypass transformers' attention interface).

A mixin of ``scorer.engine.Engine``: it uses the engine's model, ``_forward``, ``_targets``
and ``_nll``.
"""

from __future__ import annotations

from typing import Sequence

import torch
from transformers import DynamicCache

from scorer.encoded import Encoded
from scorer.kv import KV, RoomLayer, kv_len


class PaddedRows:
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

    def _run_padded(self, rows: list[tuple[KV | None, list[int]]], keep: int,
                    want_kv: bool) -> tuple[torch.Tensor, list[KV]]:
        """``_run_rows`` with padding: rows laid out as [pad | past | pad | new], each row's past
        right-aligned to the longest past and its new tokens to the end."""
        B = len(rows)
        plens = [kv_len(kv) for kv, _ in rows]
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
                cache.layers[layer] = RoomLayer(k, v, P)
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
