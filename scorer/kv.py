"""KV caches as the engine keeps and reuses them: batch-1 caches per layer, shared, compacted,
measured, and a layer with room written in place. Torch, no model."""

from __future__ import annotations

import copy

import torch
from transformers import DynamicCache
from transformers.cache_utils import DynamicLayer


class RoomLayer(DynamicLayer):
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


def kv_len(kv) -> int:
    return 0 if kv is None else kv[0][0].shape[2]


def full_attention_only(model) -> bool:
    """Whether every layer's cache is a plain growing one (no sliding window, no linear
    attention): then caches of any lengths can be padded and merged into one batch."""
    try:
        cache = DynamicCache(config=model.config)
    except Exception:
        return False
    return bool(cache.layers) and all(type(layer) is DynamicLayer for layer in cache.layers)


def share(cache):
    """A new cache object over the same tensors. Dynamic cache layers replace their tensors on
    update (concatenate, slice, repeat), never write into them, so the original stays intact."""
    new = copy.copy(cache)
    new.layers = [copy.copy(layer) for layer in cache.layers]
    return new


def compact(cache):
    """A copy holding its own compact tensors (a sliding layer's states may view a larger one)."""
    new = share(cache)
    for layer in new.layers:
        for name in ("keys", "values"):
            t = getattr(layer, name, None)
            if isinstance(t, torch.Tensor):
                setattr(layer, name, t.clone())
    return new


def cache_bytes(cache) -> int:
    return sum(t.numel() * t.element_size() for layer in cache.layers for name in ("keys", "values")
               if isinstance(t := getattr(layer, name, None), torch.Tensor))
