"""RecordActivations: the tensors that went into and came out of every module call, in order.

Used to compare a model with a reference layer by layer (CMP004) and to find where a model stops
depending on its input (CMP002). Keeps detached copies, so record small batches only.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from nndoctor.data import tensors_in
from nndoctor.probes.module_hooks import ModuleHooks


@dataclass
class Activation:
    path: str  # as in model.named_modules(); "" is the model itself
    module: nn.Module
    occurrence: int  # how many times this module ran before (shared or looped modules run several times)
    called: int  # position in call order (pre-order: a parent before its children)
    inputs: list[torch.Tensor] = field(default_factory=list)
    outputs: list[torch.Tensor] = field(default_factory=list)

    @property
    def is_leaf(self) -> bool:
        return not any(True for _ in self.module.children())


class RecordActivations(ModuleHooks):
    """``with RecordActivations(model) as rec: model(x)``; then ``rec.finished`` lists the calls that
    returned, in completion order (children before their parent)."""

    def __init__(self, model: nn.Module):
        self.model = model
        self.finished: list[Activation] = []
        self._counts: dict[str, int] = {}
        self._open: list[Activation] = []
        self._handles: list[Any] = []

    def _pre(self, path: str):
        def hook(module: nn.Module, args: tuple, kwargs: dict) -> None:
            occurrence = self._counts.get(path, 0)
            self._counts[path] = occurrence + 1
            called = sum(self._counts.values()) - 1
            self._open.append(Activation(path, module, occurrence, called, _detached((args, kwargs))))

        return hook

    def _post(self, path: str):
        return self._finish

    def _finish(self, module: nn.Module, args: tuple, kwargs: dict, output: Any) -> None:
        if not self._open or self._open[-1].module is not module:
            return
        call = self._open.pop()
        call.outputs = _detached(output)
        self.finished.append(call)


def _detached(obj: Any) -> list[torch.Tensor]:
    return [t.detach().clone() for t in tensors_in(obj)]
