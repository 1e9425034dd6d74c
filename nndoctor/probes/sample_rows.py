"""SampleRows: every module's inputs and outputs during one forward, kept as one row per sample.

For each module call, in call order, and each tensor it receives or returns that has a dimension of the
batch's size, it keeps (a few evenly spaced values of) every sample along each such dimension: a
dimension of that size is only a candidate batch axis, since sizes can coincide. Comparing two runs
whose batches differ in one sample shows which samples each tensor depends on.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from nndoctor.data import tensors_in


@dataclass
class Rows:
    dim: int  # the candidate batch dimension of the tensor
    values: torch.Tensor  # (N, k) float32: k evenly spaced values of each sample along ``dim``


@dataclass
class Event:
    path: str  # as in named_modules(); "" is the model itself
    kind: str  # "input" | "output"
    module: nn.Module
    caller: str | None  # path of the module whose forward made this call; None for the model itself
    tensors: list[list[Rows]] = field(default_factory=list)  # per tensor: one Rows per candidate dim


class SampleRows:
    """``with SampleRows(model, batch_size) as rows: model(x)``, then read ``rows.events``."""

    def __init__(self, model: nn.Module, batch_size: int, columns: int = 256):
        self.model = model
        self.batch_size = batch_size
        self.columns = columns
        self.events: list[Event] = []
        self._stack: list[str] = []
        self._handles: list[Any] = []

    def __enter__(self) -> "SampleRows":
        try:
            for path, module in self.model.named_modules():
                self._handles.append(module.register_forward_pre_hook(self._pre(path), with_kwargs=True))
                self._handles.append(module.register_forward_hook(self._post(path), always_call=True))
        except BaseException:
            self.__exit__()
            raise
        return self

    def __exit__(self, *exc: Any) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles.clear()

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
    def _rows(self, obj: Any) -> list[list[Rows]]:
        found = []
        for t in tensors_in(obj):
            dims = [d for d, size in enumerate(t.shape) if size == self.batch_size]
            if dims and not t.is_complex() and t.device.type != "meta":
                found.append([Rows(d, self._sample(t, d)) for d in dims])
        return found

    def _sample(self, t: torch.Tensor, dim: int) -> torch.Tensor:
        rows = t.detach().movedim(dim, 0).reshape(self.batch_size, -1)  # (N, features)
        width = rows.shape[1]
        if width > self.columns:
            rows = rows[:, torch.linspace(0, width - 1, self.columns, device=rows.device).long()]
        return rows.to(device="cpu", dtype=torch.float32, copy=True)


def row_changes(before: Rows, after: Rows) -> torch.Tensor:
    """Per sample: the largest change of its values, relative to the largest value of ``before``. (N,)"""
    delta = (after.values - before.values).abs()
    both_nan = torch.isnan(after.values) & torch.isnan(before.values)
    delta = torch.nan_to_num(delta.masked_fill(both_nan, 0.0), nan=float("inf"))
    scale = torch.nan_to_num(before.values.abs(), nan=0.0, posinf=0.0).max()
    scale = torch.clamp(scale, min=torch.finfo(torch.float32).tiny)
    return (delta / scale).amax(dim=1) if delta.shape[1] else torch.zeros(len(delta))
