"""Gradient flow: per-parameter gradient, weight and update norms of every optimizer step, and which
modules' outputs carry gradient history.

``GradStats`` computes every norm on the device with ``torch._foreach_norm`` and reads them, together
with any scalars the caller adds (the loss), in one host transfer per step. ``GradReach`` records one
forward pass: which modules ran, in what order, whether their outputs require grad, and whether an
output's memory reappears as a later module's input without gradient history (a ``.detach()``).
Both only measure and leave nothing behind.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from nndoctor.data import tensors_in
from nndoctor.probes.module_hooks import ModuleHooks


class GradStats:
    """Record norms around each ``optimizer.step()``: call ``before_step()`` after backward, then
    ``after_step(scalars)`` after the step; it returns the scalars as floats (the step's one sync)."""

    def __init__(self, model: nn.Module):
        named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
        self.names = [n for n, _ in named]
        self.params = [p for _, p in named]
        self.shapes = [tuple(p.shape) for p in self.params]
        self.count = len(self.params)
        self._rows: list[list[float]] = []  # per step: grad norms (NaN: no grad), weight norms, update norms
        self._present: list[list[bool]] = []  # per step: which parameters had a gradient
        self._before: list[torch.Tensor] = []

    def before_step(self) -> None:
        with torch.no_grad():
            self._before = torch._foreach_mul(self.params, 1.0) if self.params else []  # fused copy

    def after_step(self, scalars: list[torch.Tensor]) -> list[float]:
        with torch.no_grad():
            grads = [p.grad for p in self.params]
            present = [i for i, g in enumerate(grads) if g is not None]
            dense = [grads[i].coalesce().values() if grads[i].is_sparse else grads[i] for i in present]
            grad_norms = torch._foreach_norm(dense) if dense else []
            weight_norms = torch._foreach_norm(self._before) if self.params else []
            update_norms = torch._foreach_norm(torch._foreach_sub(self._before, self.params)) if self.params else []
            parts = [t.reshape(1).float() for t in [*scalars, *grad_norms, *weight_norms, *update_norms]]
            flat = torch.cat([t.to(parts[0].device) for t in parts]).tolist() if parts else []  # the one sync
        k, p = len(scalars), self.count
        grad_row = [math.nan] * p
        for i, v in zip(present, flat[k:k + len(present)]):
            grad_row[i] = v
        rest = flat[k + len(present):]
        self._rows.append(grad_row + rest[:p] + rest[p:2 * p])
        self._present.append([g is not None for g in grads])
        self._before = []
        return flat[:k]

    # ----- the measurements, as arrays (steps, parameters) ------------------------------------------
    @property
    def steps(self) -> int:
        return len(self._rows)

    def _block(self, i: int) -> np.ndarray:
        p = self.count
        if not self._rows:
            return np.zeros((0, p))
        return np.asarray(self._rows, dtype=np.float64)[:, i * p:(i + 1) * p]

    @property
    def grad_norm(self) -> np.ndarray:
        """(steps, params): NaN where the parameter had no gradient (``.grad`` is None) or a NaN one."""
        return self._block(0)

    @property
    def has_grad(self) -> np.ndarray:
        """(steps, params): whether ``.grad`` was set after backward."""
        return np.asarray(self._present, dtype=bool).reshape(len(self._present), self.count)

    def release(self) -> None:
        """Drop the references to the parameters (the measurements stay)."""
        self.params, self._before = [], []

    @property
    def weight_norm(self) -> np.ndarray:
        """(steps, params): the weight's norm before each step."""
        return self._block(1)

    @property
    def update_norm(self) -> np.ndarray:
        """(steps, params): the norm of what each step changed."""
        return self._block(2)


@dataclass
class ModuleReach:
    path: str  # as in named_modules()
    order: int  # position of its first call in the forward pass
    calls: int = 0
    output_requires_grad: bool = False
    detached_into: str | None = None  # a later module received this module's output without gradient history


@dataclass
class GradReach(ModuleHooks):
    """``with GradReach(model) as reach: model(x)``; then ``reach.modules[path]`` for modules that ran."""

    model: nn.Module
    modules: dict[str, ModuleReach] = field(default_factory=dict)
    _outputs: dict[int, str] = field(default_factory=dict)  # data_ptr of an output with history -> module
    _handles: list[Any] = field(default_factory=list)

    def _pre(self, path: str):
        def hook(module: nn.Module, args: tuple, kwargs: dict) -> None:
            reach = self.modules.setdefault(path, ModuleReach(path, len(self.modules)))
            reach.calls += 1
            for t in tensors_in((args, kwargs)):
                source = self._outputs.get(_address(t))
                if source is not None and source != path and not t.requires_grad and t.is_floating_point():
                    # the same memory a module produced with history now arrives without it: detached
                    self.modules[source].detached_into = self.modules[source].detached_into or path

        return hook

    def _post(self, path: str):
        def hook(module: nn.Module, args: tuple, kwargs: dict, output: Any) -> None:
            outs = tensors_in(output)
            reach = self.modules[path]
            reach.output_requires_grad = reach.output_requires_grad or any(t.requires_grad for t in outs)
            for t in outs:
                if t.requires_grad and t.numel():
                    self._outputs[_address(t)] = path

        return hook


def _address(t: torch.Tensor) -> int:
    return t.data_ptr() if t.numel() and t.device.type != "meta" else -1
