"""Rows of a forward, packed: the new tokens of every row end to end in one sequence, each
row's keys written in place into one buffer per layer, attention over each row's own span
(``scorer.packed``). Nothing is spent on padding; on a GPU the rows get flash attention.

A mixin of ``scorer.engine.Engine``: it uses the engine's model, ``_forward`` and
``_to_device``.
"""

from __future__ import annotations

import logging

import torch
from transformers import DynamicCache

from scorer import packed
from scorer.kv import KV, kv_len

log = logging.getLogger(__name__)


class PackedRows:
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
            self.stats = type(self.stats)()
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

    def _run_packed(self, rows: list[tuple[KV | None, list[int]]], keep: int,
                    want_kv: bool) -> tuple[torch.Tensor, list[KV]]:
        """``_run_rows`` without padding: the rows end to end in one sequence (``scorer.packed``)."""
        cache, packing, positions = self._pack(rows)
        logits = self._forward_packed([new for _, new in rows], positions, cache, packing, keep)
        if not want_kv:
            return logits, []
        return logits, [[layer.span(ks, ke) for layer in cache.layers] for ks, ke in packing.k]

    def _pack(self, rows: list[tuple[KV | None, list[int]]]):
        """The packed cache (each row's past in place, room for its new tokens), the packing,
        and the new tokens' positions."""
        plens = [kv_len(kv) for kv, _ in rows]
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
