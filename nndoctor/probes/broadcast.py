"""BroadcastTracer: elementwise ops whose result is larger than each of their inputs.

Such a "cross-product" broadcast pairs every element of one input with every element of the other:
`(N, 1) - (N,)` gives `(N, N)`. The tracer is a ``TorchFunctionMode`` active only inside ``with``; it
records facts (op, shapes, dtypes, whether both inputs view the same storage, which module was
running, the user's line). Which of these broadcasts are bugs is for the checks to judge.
"""
from __future__ import annotations

import math
import sys
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from nndoctor.probes.data_stats import shares_storage
from nndoctor.probes.errors import user_call_site
from nndoctor.probes.trace import ModuleAwareMode

# Pointwise losses that broadcast input against target (torch only warns); they return a scalar, so
# the broadcast shape is computed from their arguments.
BROADCASTING_LOSSES = {F.mse_loss, F.l1_loss, F.smooth_l1_loss, F.huber_loss}


@dataclass(frozen=True)
class Broadcast:
    op: str  # e.g. "sub", "mul", "mse_loss"
    shapes: tuple[tuple[int, ...], tuple[int, ...]]  # the two inputs, in argument order
    result: tuple[int, ...]
    floating: bool  # the result (or the loss) is floating point: arithmetic, not an index/mask grid
    same_storage: bool  # both inputs view one tensor (`x[:, None] - x`): a deliberate pairwise op
    module: str | None  # named_modules() path of the innermost running module; None outside the model
    source: str  # "file.py:12" of the innermost frame in the user's code, or ""
    source_line: str


def broadcast_shape(a: tuple[int, ...], b: tuple[int, ...]) -> tuple[int, ...] | None:
    """The shape torch broadcasting gives ``a`` and ``b``, or None when they do not broadcast."""
    out = []
    for i in range(1, max(len(a), len(b)) + 1):
        x = a[-i] if i <= len(a) else 1
        y = b[-i] if i <= len(b) else 1
        if x != y and 1 not in (x, y):
            return None
        out.append(max(x, y) if 1 in (x, y) else x)
    return tuple(reversed(out))


def is_cross_product(a: tuple[int, ...], b: tuple[int, ...], result: tuple[int, ...]) -> bool:
    """True when broadcasting ``a`` with ``b`` gives ``result`` and it is larger than each of them."""
    size = math.prod(result)
    return size > math.prod(a) and size > math.prod(b) and broadcast_shape(a, b) == tuple(result)


class BroadcastTracer(ModuleAwareMode):
    """``with BroadcastTracer(model) as tracer: <forward and loss>``, then read ``tracer.events``.

    Events are deduplicated by (op, shapes, module, source); at most ``limit`` are kept.
    """

    def __init__(self, model: nn.Module | None = None, limit: int = 32):
        super().__init__(model)
        self.events: list[Broadcast] = []
        self.limit = limit

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        result = func(*args, **kwargs)
        if len(self.events) < self.limit:
            self._inspect(func, args, kwargs, result)
        return result

    def _inspect(self, func: Any, args: tuple, kwargs: dict, result: Any) -> None:
        tensors = [a for a in args if isinstance(a, torch.Tensor)]
        tensors += [v for v in kwargs.values() if isinstance(v, torch.Tensor)]
        if len(tensors) < 2:
            return
        if func in BROADCASTING_LOSSES:
            a, b = tensors[:2]
            shape = broadcast_shape(tuple(a.shape), tuple(b.shape))
            if shape is not None and is_cross_product(tuple(a.shape), tuple(b.shape), shape):
                self._record(func, a, b, shape, a.is_floating_point())
            return
        if not isinstance(result, torch.Tensor) or result.ndim == 0:
            return
        shape = tuple(result.shape)
        first_three = tensors[:3]  # torch.where(cond, a, b) has three
        for i, a in enumerate(first_three):
            for b in first_three[i + 1:]:
                if is_cross_product(tuple(a.shape), tuple(b.shape), shape):
                    self._record(func, a, b, shape, result.is_floating_point())
                    return

    def _record(self, func: Any, a: torch.Tensor, b: torch.Tensor, shape: tuple[int, ...], floating: bool) -> None:
        source, line = _user_frame()
        stack = self._modules.stack if self._modules is not None else []
        event = Broadcast(
            op=getattr(func, "__name__", str(func)).strip("_"),
            shapes=(tuple(a.shape), tuple(b.shape)),
            result=shape,
            floating=floating,
            same_storage=shares_storage(a, b),
            module=stack[-1].path if stack else None,
            source=source,
            source_line=line,
        )
        if event not in self.events:
            self.events.append(event)


def _user_frame() -> tuple[str, str]:
    """The innermost frame of the user's code in the traced call (see ``user_call_site``)."""
    frame = sys._getframe(1)
    while frame is not None and frame.f_code.co_filename == __file__:  # the tracer's own frames
        frame = frame.f_back
    return user_call_site(frame)
