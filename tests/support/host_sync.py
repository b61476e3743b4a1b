"""Finds, on a CPU, the calls that would make the host wait for the GPU.

On CUDA the host queues kernels and runs ahead; a call that needs a device value on the host
(``.item()``, ``.tolist()``, ``bool(t)``, indexing with a boolean mask, ``nonzero``) waits for
everything queued before it. On a CPU nothing waits, so such a call cannot be seen by timing.
``HostSyncs`` sees it by tracking which tensors would live on the GPU: the model's weights, what
``Engine._to_device`` returns, everything made inside the model's forward, and everything
computed from any of those. A call of the kinds above on such a tensor is recorded, with the
innermost frames outside torch, so that a test can say where it came from.
"""

from __future__ import annotations

import traceback
from dataclasses import dataclass

import torch
from torch.overrides import TorchFunctionMode
from torch.utils._pytree import tree_flatten
from torch.utils.weak import WeakIdKeyDictionary

# Calls that read a device value on the host.
READS = {torch.Tensor.item, torch.Tensor.tolist, torch.Tensor.cpu, torch.Tensor.numpy, torch.Tensor.__bool__,
         torch.Tensor.__int__, torch.Tensor.__float__, torch.Tensor.__index__, torch.nonzero, torch.Tensor.nonzero,
         torch.masked_select, torch.Tensor.masked_select, torch.unique, torch.Tensor.unique, torch.equal,
         torch.allclose, torch.Tensor.allclose}
# Calls whose output size depends on device values when given a boolean (or repeats) tensor.
DATA_SIZED = {torch.Tensor.__getitem__, torch.Tensor.__setitem__, torch.Tensor.index_put_, torch.Tensor.index_put,
              torch.repeat_interleave, torch.Tensor.repeat_interleave}


@dataclass
class Sync:
    call: str
    where: tuple[str, ...]  # innermost first: "file.py:line function"

    def __str__(self) -> str:
        return f"{self.call} at " + " <- ".join(self.where)


class HostSyncs(TorchFunctionMode):
    def __init__(self):
        super().__init__()
        self.syncs: list[Sync] = []
        self._device = WeakIdKeyDictionary()
        self._in_model = 0

    def watch(self, engine) -> "HostSyncs":
        """Treat ``engine``'s model and its inputs as on the device."""
        for t in [*engine.model.parameters(), *engine.model.buffers()]:
            self._device[t] = True
        to_device, forward = engine._to_device, engine.model.forward

        def _to_device(t):
            out = to_device(t)
            if out is t:  # on a CPU the host tensor itself: keep that one a host tensor
                out = t.clone()
            self._device[out] = True
            return out

        def model_forward(*args, **kwargs):
            self._in_model += 1
            try:
                return forward(*args, **kwargs)
            finally:
                self._in_model -= 1

        engine._to_device, engine.model.forward = _to_device, model_forward
        return self

    def _on_device(self, values) -> bool:
        return any(isinstance(v, torch.Tensor) and v in self._device for v in tree_flatten(values)[0])

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if self._on_device((args, kwargs)) and (func in READS or (func in DATA_SIZED and _data_sized(func, args, kwargs))):
            where = tuple(f"{f.filename.rsplit('/', 1)[-1]}:{f.lineno} {f.name}"
                          for f in reversed(traceback.extract_stack()[:-1]) if "/torch/" not in f.filename
                          and not f.filename.endswith("host_sync.py"))
            self.syncs.append(Sync(getattr(func, "__qualname__", str(func)), where[:4]))
        out = func(*args, **kwargs)
        if self._in_model or self._on_device((args, kwargs)):
            for t in tree_flatten(out)[0]:
                if isinstance(t, torch.Tensor):
                    self._device[t] = True
        return out


def _data_sized(func, args, kwargs) -> bool:
    if func in (torch.repeat_interleave, torch.Tensor.repeat_interleave):
        repeats = args[1] if len(args) > 1 else kwargs.get("repeats")
        return isinstance(repeats, torch.Tensor) and kwargs.get("output_size") is None
    index = args[1] if len(args) > 1 else kwargs.get("indices")
    return any(isinstance(i, torch.Tensor) and i.dtype == torch.bool for i in tree_flatten(index)[0])
