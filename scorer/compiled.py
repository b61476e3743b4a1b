"""The model's per-token blocks compiled (``--compile``): each decoder layer's normalisations
and MLP run as fused kernels, its attention as it is.

In eager mode every elementwise step of a layer is a kernel of its own that reads and writes
the whole activation: an RMSNorm is six (upcast, square, mean, scale by the reciprocal root,
downcast, weight); the MLP's activation and gate product are two more passes over its
widest tensor. On a GPU these memory-bound passes cost a large share of a forward whose
matmuls alone would run near the hardware's peak. ``torch.compile`` fuses each block into a
kernel or two and leaves the matmuls to the same BLAS calls.

Attention is left eager: its KV cache (stored prefixes, packed rows written into their slots)
is plain Python that a compiler would specialise on, per layer and per batch. Each block's code
is compiled for a few shapes at load and serves every layer (their weights are inputs of the
compiled graph): compiling costs seconds, and the first request does not pay for it. The
warm-up shapes vary the rows and the tokens, so that torch marks those two dimensions dynamic
and keeps the model's own (hidden size, MLP width) static, which its kernels are tuned for: a
new batch shape then does not compile again.
"""

from __future__ import annotations

import torch


def decoder_layers(model) -> torch.nn.ModuleList:
    """The model's stack of decoder layers: its decoder's ``layers``, else its longest ModuleList."""
    decoder = model.get_decoder() if hasattr(model, "get_decoder") else None
    layers = getattr(decoder, "layers", None)
    if isinstance(layers, torch.nn.ModuleList) and len(layers):
        return layers
    lists = [m for m in model.modules() if isinstance(m, torch.nn.ModuleList)]
    if not lists:
        raise ValueError(f"{type(model).__name__} has no stack of layers to compile")
    return max(lists, key=len)


def is_attention(module: torch.nn.Module) -> bool:
    """A layer's attention: it reads the KV cache (transformers gives it its ``layer_idx``)."""
    return hasattr(module, "layer_idx") or "attention" in type(module).__name__.lower()


WARM_UP = ((1, 8), (1, 9), (2, 9))  # (rows, tokens): one row (a size of 1 is its own case), then several


@torch.inference_mode()
def compile_blocks(model) -> list[torch.nn.Module]:
    """Compile every block of every decoder layer but its attention (and those without weights,
    dropout in eval mode: nothing to fuse), in place, and compile now. Returns the compiled
    blocks."""
    blocks = [child for layer in decoder_layers(model) for child in layer.children()
              if not is_attention(child) and any(True for _ in child.parameters())]  # no dropout, no identity
    for block in blocks:
        block.compile()
    device = next(model.parameters()).device
    for shape in WARM_UP:
        model(input_ids=torch.full(shape, 3, device=device), logits_to_keep=1)
    return blocks
