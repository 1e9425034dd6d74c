"""ActivationStats: per activation site, which units never activate and how many values saturate.

A ``TorchFunctionMode`` active only inside ``with``; it sees ReLU-like, tanh and sigmoid calls whether
they come from a layer (``nn.ReLU``) or a functional call in a forward (``torch.relu(h)``). A site is
one call position in the forward pass (module, user's line, and the how-many-th call from there), so
a layer reused twice counts as two sites. Over every forward run inside ``with`` it accumulates, on
the device:
  - ReLU-like: per unit (the feature axis: dim 1 of images and conv outputs, the last dim otherwise),
    whether its input was ever >= 0. A unit whose input was negative for every sample and position
    never activates; inputs that are exactly zero (sparse inputs) do not count as negative, nor do
    non-finite ones.
  - tanh/sigmoid: how many outputs lie at the flat ends (|tanh| > 0.99, sigmoid outside [0.01, 0.99]).
``results()`` reads everything in one host transfer. Only measures.
"""
from __future__ import annotations

import sys
import weakref
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from nndoctor.probes.op_trace import Site, current_site
from nndoctor.probes.trace import ModuleAwareMode

RELU_LIKE = {"relu", "relu_", "relu6"}
SQUASHING = {"tanh": 0.01, "tanh_": 0.01, "sigmoid": 0.01, "sigmoid_": 0.01}  # op -> distance from the ends
_CONV = {"conv1d", "conv_transpose1d"}  # (N, C, L) outputs: units on dim 1


@dataclass
class SiteStats:
    site: Site
    kind: str  # "relu" | "tanh" | "sigmoid"
    units: int  # size of the feature axis
    dead_units: int = 0  # relu: units whose input was never >= 0
    saturated: int = 0  # tanh/sigmoid: values at the flat ends
    values: int = 0  # values seen

    @property
    def dead_fraction(self) -> float:
        return self.dead_units / self.units if self.units else 0.0

    @property
    def saturated_fraction(self) -> float:
        return self.saturated / self.values if self.values else 0.0


class ActivationStats(ModuleAwareMode):
    """``with ActivationStats(model) as stats:``, then for each batch ``stats.new_pass(); model(x)``; then
    ``stats.results()``."""

    def __init__(self, model: nn.Module):
        super().__init__(model)
        self._sites: dict[tuple, dict[str, Any]] = {}  # key -> accumulators on the device
        self._calls: dict[tuple, int] = {}  # calls per (module, line) in the current forward
        self._channel_first: dict[int, weakref.ref] = {}  # conv1d outputs: (N, C, L), units on dim 1

    def new_pass(self) -> None:
        """Call before each forward pass: call positions restart."""
        self._calls.clear()
        self._channel_first.clear()

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        name = getattr(func, "__name__", "")
        x = args[0] if args else kwargs.get("input")
        if name in RELU_LIKE and isinstance(x, torch.Tensor) and x.is_floating_point():
            self._relu(x)  # before the call: relu_ overwrites its input
        result = func(*args, **kwargs)
        if name in SQUASHING and isinstance(result, torch.Tensor) and result.is_floating_point():
            self._squash(name.rstrip("_"), result, SQUASHING[name])
        elif name in _CONV and isinstance(result, torch.Tensor):
            self._channel_first[id(result)] = weakref.ref(result)
        return result

    def _relu(self, x: torch.Tensor) -> None:
        axis = self._unit_axis(x)
        if axis is None:
            return
        with torch.no_grad():
            others = [d for d in range(x.ndim) if d != axis]
            x = x.detach()
            judged = (x >= 0) | ~torch.isfinite(x)  # a non-finite input is NUM001's, not a dead unit
            alive = judged.any(dim=others) if others else judged  # (units,)
        acc = self._site("relu", x, axis)
        if acc is not None:
            acc["alive"] = alive if acc["alive"] is None else acc["alive"] | alive

    def _squash(self, kind: str, y: torch.Tensor, margin: float) -> None:
        axis = self._unit_axis(y)
        if axis is None:
            return
        with torch.no_grad():
            y = y.detach()
            flat = (y.abs() > 1 - margin) if kind == "tanh" else ((y < margin) | (y > 1 - margin))
            count = flat.sum()
        acc = self._site(kind, y, axis)
        if acc is not None:
            acc["saturated"] = acc["saturated"] + count
            acc["values"] += y.numel()

    def _unit_axis(self, t: torch.Tensor) -> int | None:
        if t.ndim < 2 or t.numel() == 0:
            return None
        conv = self._channel_first.get(id(t))
        return 1 if t.ndim >= 4 or (conv is not None and conv() is t) else t.ndim - 1

    def _site(self, kind: str, t: torch.Tensor, axis: int) -> dict[str, Any] | None:
        site = current_site(self._modules, sys._getframe(0))
        call = (site.module, site.source)
        nth = self._calls.get(call, 0)
        self._calls[call] = nth + 1
        key = (kind, site, nth)
        acc = self._sites.get(key)
        if acc is None:
            acc = self._sites[key] = {"site": site, "kind": kind, "units": int(t.shape[axis]), "alive": None,
                                      "saturated": torch.zeros((), dtype=torch.long, device=t.device), "values": 0}
        elif acc["units"] != t.shape[axis]:
            return None  # the same call position with another width (a loop over layers of different sizes)
        return acc

    def results(self) -> list[SiteStats]:
        """Every site's statistics, in the order the sites first ran (one host transfer)."""
        accs = list(self._sites.values())
        if not accs:
            return []
        counts = [(~acc["alive"]).sum() if acc["alive"] is not None else acc["saturated"] for acc in accs]
        values = torch.stack([c.to(counts[0].device) for c in counts]).tolist()
        out = []
        for acc, value in zip(accs, values):
            stats = SiteStats(acc["site"], acc["kind"], acc["units"], values=acc["values"])
            if acc["kind"] == "relu":
                stats.dead_units = int(value)
            else:
                stats.saturated = int(value)
            out.append(stats)
        return out
