"""How the GPU's matmuls run (EFF003-EFF005): on the first training forward of a root on CUDA, a global
forward pre-hook (installed for that one forward only) reads, for every Linear and convolution of the root,
its dimensions, its input's dtype, shape and memory layout, and the autocast state. Tensor metadata only:
no kernel, no sync, no transfer; the hook is gone before the backward.
"""
from __future__ import annotations

import math
import sys
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.nn.modules import module as module_hooks

from nndoctor.probes.errors import user_call_site
from nndoctor.probes.watchers.base import DONE, Watcher, outside_nndoctor

DEVICES = ("cuda",)  # where these facts are gathered (tests add "cpu" to exercise the watcher without a GPU)
_compiling = getattr(torch.compiler, "is_compiling", lambda: False)  # a compiled submodule: its hooks are traced


@dataclass
class Layer:
    """One Linear/convolution's first call."""

    path: str
    kind: str  # "linear", "conv1d", "conv2d", "conv3d"
    in_dim: int  # in_features / in_channels
    out_dim: int  # out_features / out_channels
    macs: float  # multiply-adds of this call, from its input shape
    dtype: str  # the dtype its matmul ran in: autocast's when enabled on its device, else its input's
    channels_last: bool | None  # a 2-D convolution: its input or weight in channels_last layout; else None


@dataclass
class Forward:
    """The root's first training forward on the device."""

    device: str
    site: str  # the user's line that called the model
    autocast: str  # "" when off, else "bfloat16"/"float16"
    param_dtypes: dict[str, int]  # dtype -> number of parameter elements
    bf16_supported: bool


def bf16_supported() -> bool:
    try:
        return bool(torch.cuda.is_available() and torch.cuda.is_bf16_supported())
    except Exception:
        return False


def _macs(module: nn.Module, x: torch.Tensor) -> float:
    if isinstance(module, nn.Linear):
        return math.prod(x.shape[:-1]) * module.in_features * module.out_features
    # a convolution: output positions ~ input positions / stride (padding aside), each in/groups * kernel MACs
    spatial = math.prod(x.shape[-len(module.kernel_size):]) / math.prod(module.stride)
    batch = x.shape[0] if x.dim() == len(module.kernel_size) + 2 else 1
    return batch * spatial * module.out_channels * module.in_channels / module.groups * math.prod(module.kernel_size)


def _layout(module: nn.Module, x: torch.Tensor) -> bool | None:
    if not isinstance(module, nn.Conv2d) or x.dim() != 4:
        return None
    cl = torch.channels_last
    return x.is_contiguous(memory_format=cl) or module.weight.is_contiguous(memory_format=cl)


class GpuUsageWatcher(Watcher):
    name = "gpu-usage"

    def __init__(self, run) -> None:
        super().__init__(run)
        self.forward: Forward | None = None
        self.layers: list[Layer] = []
        self._names: dict[int, str] = {}
        self._hook: Any = None
        self.skipped = False  # the first training forward was not on a GPU

    def on_forward(self, module, inputs, kwargs, training_step: bool) -> Any:
        self._unhook()  # a forward that raised never reached the backward
        if self._finished():
            return DONE
        if not training_step or self.run.replaying:
            return None
        if type(module).__name__ == "OptimizedModule":  # a hook would be traced into the compiled graph
            self.broken = True
            return DONE
        root = self.run.root(module)
        device = root.params[0].device.type if root.params else "cpu"
        if device not in DEVICES:  # the first training forward decides: a CPU run has no GPU matmuls
            self.skipped = True
            return DONE
        try:
            autocast = str(torch.get_autocast_dtype(device)).replace("torch.", "") \
                if torch.is_autocast_enabled(device) else ""
        except Exception:
            autocast = ""
        dtypes: dict[str, int] = {}
        for p in root.params:
            if p.requires_grad:
                key = str(p.dtype).replace("torch.", "")
                dtypes[key] = dtypes.get(key, 0) + p.numel()
        self.forward = Forward(device, user_call_site(outside_nndoctor(sys._getframe(1)))[0], autocast, dtypes,
                               bf16_supported())
        self._names = {id(m): f"model.{n}".rstrip(".") for n, m in root.modules.items()
                       if isinstance(m, (nn.Linear, nn.modules.conv._ConvNd))}
        self._hook = module_hooks.register_module_forward_pre_hook(self._pre_forward)

    def _pre_forward(self, module: nn.Module, args: tuple) -> None:
        if _compiling():  # constant-folded while tracing: no graph break, no mutation for Dynamo to track
            return
        path = self._names.pop(id(module), None)  # its first call only
        if path is None or self.broken or not args or not isinstance(args[0], torch.Tensor):
            return
        try:
            x = args[0]
            device = x.device.type
            dtype = torch.get_autocast_dtype(device) if torch.is_autocast_enabled(device) else x.dtype
            linear = isinstance(module, nn.Linear)
            kind = "linear" if linear else f"conv{len(module.kernel_size)}d"
            self.layers.append(Layer(
                path, kind, module.in_features if linear else module.in_channels,
                module.out_features if linear else module.out_channels, float(_macs(module, x)),
                str(dtype).replace("torch.", ""), _layout(module, x)))
        except Exception:
            self.broken = True

    def _unhook(self) -> None:
        if self._hook is not None:
            self._hook.remove()
            self._hook = None

    def _finished(self) -> bool:
        """The one forward is read (or will not be) and its hook is gone: no event is needed any more."""
        return self._hook is None and (self.forward is not None or self.skipped or self.broken)

    def on_backward(self, loss) -> Any:
        self._unhook()
        return DONE if self._finished() else None

    def on_after_optimizer_step(self, optimizer) -> Any:
        self._unhook()
        return DONE if self._finished() else None

    def stop(self) -> None:
        self._unhook()

    def describe(self) -> str:
        if self.forward is None:
            return "GPU usage: no training forward on a GPU"
        return f"GPU usage: {len(self.layers)} matmul layers read on the first training forward on {self.forward.device}"
