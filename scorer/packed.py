"""Packed rows for full-attention models: no padding, one attention call per layer.

The rows of a forward (each: a past, the KV cache of its prefix, and new tokens) are laid end
to end instead of padded to one length:

    queries  [new_1 | new_2 | ... ]                     (1, sum n_b) through the whole model
    keys     [past_1 new_1 | past_2 new_2 | ... ]       per layer, written in place

and attention runs on each row's own span with the causal diagonal at its bottom right (each
new token sees its row's past and the new tokens before it). On CUDA in half precision that is
one ``varlen_attn`` call (flash attention over variable-length rows); elsewhere one
``scaled_dot_product_attention`` per row, with ``causal_lower_right``. Either way a row
computes exactly what it computes alone, and nothing is spent on padding.

It plugs into transformers through its own extension points: an attention function and a mask
function registered under ``ATTENTION`` (the mask is none: the spans say it all), and a cache
layer that writes the new keys into their slots. The model is switched to it only for the
forward that packs (``attention``), so every other path keeps the model's own attention.
"""

from __future__ import annotations

import contextlib
import inspect
import logging
from dataclasses import dataclass, field
from typing import Iterator

import torch
import torch.nn.functional as F
from torch.nn.attention.bias import causal_lower_right
from transformers import AttentionInterface
from transformers.cache_utils import DynamicLayer
from transformers.masking_utils import AttentionMaskInterface

ATTENTION = "reer_packed"
log = logging.getLogger(__name__)

try:  # recent torch on CUDA: flash attention over variable-length rows
    from torch.nn.attention.varlen import varlen_attn
except ImportError:  # pragma: no cover - depends on the torch build
    varlen_attn = None
varlen_failed: str | None = None  # why varlen_attn failed here once (then it is not tried again)
VARLEN_PARAMS = frozenset(inspect.signature(varlen_attn).parameters) if varlen_attn is not None else frozenset()


@dataclass(frozen=True)
class Packing:
    """Where each row's queries and keys lie: Python spans for the per-row path, cumulative
    offsets on the device for ``varlen_attn``."""

    q: list[tuple[int, int]]
    k: list[tuple[int, int]]
    cu_q: torch.Tensor  # int32 (rows + 1,)
    cu_k: torch.Tensor
    max_q: int
    max_k: int
    calls: list[int] = field(default_factory=list)  # one entry per attention layer that used it


def plan(rows: list[tuple[int, int]]) -> tuple[list[tuple[int, int]], list[tuple[int, int]], list[int], list[int]]:
    """For rows of (past, new) lengths: the query spans, the key spans, each new token's key
    slot and each new token's position."""
    q, k, slots, positions = [], [], [], []
    tq = tk = 0
    for p, n in rows:
        q.append((tq, tq + n))
        k.append((tk, tk + p + n))
        slots += range(tk + p, tk + p + n)
        positions += range(p, p + n)
        tq, tk = tq + n, tk + p + n
    return q, k, slots, positions


def varlen_options(query: torch.Tensor, key: torch.Tensor, scaling: float | None) -> dict | None:
    """The arguments ``varlen_attn`` needs for causal attention on these tensors, or None where
    it cannot do it (no CUDA, fp32, a head too wide, or a torch whose ``varlen_attn`` lacks a
    feature this model needs)."""
    if (varlen_attn is None or not query.is_cuda or query.dtype not in (torch.float16, torch.bfloat16)
            or query.shape[-1] > 256):
        return None
    return varlen_arguments(VARLEN_PARAMS, query.shape[1], key.shape[1], query.shape[-1], scaling)


def varlen_arguments(params: frozenset[str], heads: int, kv_heads: int, dim: int,
                     scaling: float | None) -> dict | None:
    """Causal attention's keyword arguments for a ``varlen_attn`` whose parameters are ``params``
    (its signature has changed between torch releases: ``is_causal`` became ``window_size``;
    ``scale`` and ``enable_gqa`` came later), or None where it cannot do what is asked."""
    options: dict = {}
    if "window_size" in params:
        options["window_size"] = (-1, 0)
    elif "is_causal" in params:
        options["is_causal"] = True
    else:
        return None
    if "scale" in params:
        options["scale"] = scaling
    elif scaling is not None and abs(scaling - dim ** -0.5) > 1e-12:
        return None
    if heads != kv_heads:
        if heads % kv_heads:
            return None
        # Flash attention takes fewer key heads than query heads natively; a torch whose
        # varlen_attn has ``enable_gqa`` asks for it to be said, older ones pass them through
        # (should one refuse, the call fails and attention goes row by row).
        if "enable_gqa" in params:
            options["enable_gqa"] = True
    return options


def packed_attention(module, query, key, value, attention_mask, dropout: float = 0.0, scaling: float | None = None,
                     reer_packing: Packing | None = None, **kwargs):
    """transformers' attention interface: query (1, heads, sum n, dim), key and value
    (1, kv_heads, sum p + n, dim); returns (1, sum n, heads, dim)."""
    if reer_packing is None:
        raise RuntimeError("packed attention was called without its packing (a forward outside Engine)")
    if kwargs.get("softcap") is not None or kwargs.get("position_bias") is not None or kwargs.get("s_aux") is not None:
        raise NotImplementedError("packed attention supports plain scaled dot-product attention only")
    global varlen_failed
    p = reer_packing
    p.calls.append(1)
    if varlen_failed is None and (options := varlen_options(query, key, scaling)) is not None:
        q, k, v = (t[0].transpose(0, 1).contiguous() for t in (query, key, value))  # (tokens, heads, dim)
        try:
            return varlen_attn(q, k, v, p.cu_q, p.cu_k, p.max_q, p.max_k, **options)[None], None
        except torch.OutOfMemoryError:
            raise  # the scorer halves the batch
        except (RuntimeError, TypeError, ValueError) as exc:  # this torch/GPU cannot: attend row by row
            varlen_failed = f"{type(exc).__name__}: {exc}"
            log.warning("flash attention over packed rows failed (%s); attending row by row from now on",
                        varlen_failed)
    outs = [F.scaled_dot_product_attention(query[:, :, qs:qe], key[:, :, ks:ke], value[:, :, ks:ke],
                                           attn_mask=causal_lower_right(qe - qs, ke - ks), scale=scaling,
                                           enable_gqa=True)
            for (qs, qe), (ks, ke) in zip(p.q, p.k)]
    return torch.cat(outs, dim=2).transpose(1, 2), None


def _no_mask(*args, **kwargs) -> None:
    return None


AttentionInterface.register(ATTENTION, packed_attention)
AttentionMaskInterface.register(ATTENTION, _no_mask)


class PackedLayer(DynamicLayer):
    """A cache layer over a packed key buffer (tokens, kv_heads, dim), pasts already in place:
    ``update`` writes the new keys into their slots and hands the model the whole buffer."""

    def __init__(self, keys: torch.Tensor, values: torch.Tensor, slots: torch.Tensor):
        super().__init__()
        self.buf_k, self.buf_v, self.slots = keys, values, slots
        self.keys, self.values = _heads_first(keys), _heads_first(values)
        self.device, self.is_initialized = keys.device, True

    def update(self, key_states, value_states, *args, **kwargs):
        self.buf_k.index_copy_(0, self.slots, key_states[0].transpose(0, 1))
        self.buf_v.index_copy_(0, self.slots, value_states[0].transpose(0, 1))
        return self.keys, self.values

    def get_seq_length(self) -> int:
        return self.buf_k.shape[0] - self.slots.numel()

    def span(self, start: int, end: int) -> tuple[torch.Tensor, torch.Tensor]:
        """One row's keys and values as a batch-1 cache layer (views, no copy)."""
        return _heads_first(self.buf_k[start:end]), _heads_first(self.buf_v[start:end])


def _heads_first(buf: torch.Tensor) -> torch.Tensor:
    """(tokens, heads, dim) -> the (1, heads, tokens, dim) view transformers expects."""
    return buf.transpose(0, 1)[None]


@contextlib.contextmanager
def attention(model) -> Iterator[None]:
    """The model on packed attention for the duration of one forward."""
    config = model.config
    old = config._attn_implementation
    config._attn_implementation = ATTENTION
    try:
        yield
    finally:
        config._attn_implementation = old
