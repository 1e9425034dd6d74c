"""SampleRows: every module's inputs and outputs during one forward, kept per sample.

For each module call, in call order, and each tensor it receives or returns that has a dimension of the
batch's size, it keeps (a few evenly spaced values of) every sample. Comparing two runs whose batches
differ in one sample shows which samples each tensor depends on. A tensor with two dimensions of that
size (a sample-by-sample similarity matrix, or a sequence as long as the batch) is kept along both:
entry (i, j) may then depend on samples i and j.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from nndoctor.data import tensors_in
from nndoctor.probes.module_hooks import ModuleHooks


@dataclass
class Rows:
    dims: tuple[int, ...]  # the tensor's dimensions of the batch's size (at most two), moved to the front
    values: torch.Tensor  # (N, k) or (N, N, k) float32: k evenly spaced values per sample (pair)
    dtype: torch.dtype  # of the tensor itself: its precision bounds how exactly two runs can agree


@dataclass
class Event:
    path: str  # as in named_modules(); "" is the model itself
    kind: str  # "input" | "output"
    module: nn.Module
    caller: str | None  # path of the module whose forward made this call; None for the model itself
    tensors: list[Rows] = field(default_factory=list)


class SampleRows(ModuleHooks):
    """``with SampleRows(model, batch_size) as rows: model(x)``, then read ``rows.events``."""
    POST_KWARGS, POST_ALWAYS = False, True  # the post hook sees the output even when forward raises

    def __init__(self, model: nn.Module, batch_size: int, columns: int = 256):
        self.model = model
        self.batch_size = batch_size
        self.columns = columns
        self.events: list[Event] = []
        self._stack: list[str] = []
        self._handles: list[Any] = []

    def _pre(self, path: str):
        def hook(module: nn.Module, args: tuple, kwargs: dict) -> None:
            caller = self._stack[-1] if self._stack else None
            self.events.append(Event(path, "input", module, caller, self._rows((args, kwargs))))
            self._stack.append(path)

        return hook

    def _post(self, path: str):
        def hook(module: nn.Module, args: tuple, output: Any) -> None:
            if self._stack and self._stack[-1] == path:
                self._stack.pop()
            caller = self._stack[-1] if self._stack else None
            self.events.append(Event(path, "output", module, caller, self._rows(output)))

        return hook

    @torch.no_grad()
    def _rows(self, obj: Any) -> list[Rows]:
        found = []
        for t in tensors_in(obj):
            dims = tuple(d for d, size in enumerate(t.shape) if size == self.batch_size)[:2]
            if dims and not t.is_complex() and t.device.type != "meta":
                found.append(Rows(dims, self._sample(t, dims), t.dtype))
        return found

    def _sample(self, t: torch.Tensor, dims: tuple[int, ...]) -> torch.Tensor:
        lead = (self.batch_size,) * len(dims)
        values = t.detach().movedim(dims, tuple(range(len(dims)))).reshape(*lead, -1)  # (N, [N,] features)
        width, keep = values.shape[-1], max(4, self.columns // self.batch_size ** (len(dims) - 1))
        if width > keep:
            values = values[..., torch.linspace(0, width - 1, keep, device=values.device).long()]
        return values.to(device="cpu", dtype=torch.float32, copy=True)


def moves_of_others(before: Rows, after: Rows, k: int) -> torch.Tensor:
    """For each sample other than ``k``: the largest change of its values (for a pairwise tensor, of its
    entries with samples other than ``k``), relative to the largest value of ``before``. (N-1,)"""
    delta = (after.values - before.values).abs()
    both_nan = torch.isnan(after.values) & torch.isnan(before.values)
    delta = torch.nan_to_num(delta.masked_fill(both_nan, 0.0), nan=float("inf"))
    scale = torch.nan_to_num(before.values.abs(), nan=0.0, posinf=0.0).max() if delta.numel() else torch.tensor(0.0)
    delta = delta / torch.clamp(scale, min=torch.finfo(torch.float32).tiny)
    others = torch.cat([torch.arange(k), torch.arange(k + 1, delta.shape[0])])
    delta = delta[others]
    if len(before.dims) == 2:
        delta = delta[:, others]  # entry (i, j) may depend on samples i and j
    return delta.reshape(len(others), -1).amax(dim=1) if delta[0].numel() else torch.zeros(len(others))
