"""How much of a device the scorer takes: logit and prefix-cache budgets, and out-of-memory."""

from __future__ import annotations

import torch

HOST_MAX_LOGIT_BYTES = 1 << 30  # rows per forward are cut so that their kept logits (as fp32) fit this
HOST_PREFIX_CACHE_BYTES = 1 << 30  # stored prefix caches, in host memory


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
