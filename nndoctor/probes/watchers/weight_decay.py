"""Which parameters each optimizer decays (EFF002): at an optimizer's first step, its parameter groups read
once (weight decay, learning rate, and which of their parameters are one-dimensional - biases, norm scales
and shifts - or embedding tables), named through the roots seen in training forwards. No tensor is read."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from torch import nn

from nndoctor.probes.watchers.base import Watcher

_NAMED = 12  # parameter names kept per group


@dataclass
class Group:
    index: int
    weight_decay: float
    lr: float
    tensors: int = 0
    one_d: int = 0  # one-dimensional tensors
    one_d_elements: int = 0
    one_d_names: list[str] = field(default_factory=list)
    embeddings: list[str] = field(default_factory=list)  # nn.Embedding weights in the group


@dataclass
class Optimizer:
    kind: str
    site: str
    groups: list[Group]


class WeightDecayWatcher(Watcher):
    name = "weight-decay-groups"

    def __init__(self, run) -> None:
        super().__init__(run)
        self.optimizers: list[Optimizer] = []
        self._sites: dict[int, str] = {}
        self._seen: set[int] = set()

    def on_optimizer_created(self, optimizer, site: str) -> None:
        self._sites[id(optimizer)] = site

    def on_before_optimizer_step(self, optimizer) -> None:
        if id(optimizer) in self._seen or self.broken or len(self._seen) >= 8:
            return
        self._seen.add(id(optimizer))
        try:
            self.optimizers.append(self._read(optimizer))
        except Exception:
            self.broken = True

    def _read(self, optimizer: Any) -> Optimizer:
        names: dict[int, str] = {}
        embeddings: set[int] = set()
        for r in self.run.roots.values():
            names.update({k: f"model.{v}" for k, v in r.names.items()})
            embeddings.update(id(m.weight) for m in r.modules.values() if isinstance(m, nn.Embedding))
        groups = []
        for i, g in enumerate(optimizer.param_groups):
            wd, lr = g.get("weight_decay", 0.0), g.get("lr", 0.0)
            group = Group(i, float(wd) if isinstance(wd, (int, float)) else 0.0,
                          float(lr) if isinstance(lr, (int, float)) else float("nan"))
            for p in g["params"]:
                if not p.requires_grad:
                    continue
                group.tensors += 1
                name = names.get(id(p), "")
                if p.dim() == 1:
                    group.one_d += 1
                    group.one_d_elements += p.numel()
                    if len(group.one_d_names) < _NAMED and name:
                        group.one_d_names.append(name)
                elif id(p) in embeddings and len(group.embeddings) < _NAMED:
                    group.embeddings.append(name or "an nn.Embedding weight")
            groups.append(group)
        return Optimizer(type(optimizer).__name__, self._sites.get(id(optimizer), ""), groups)

    def describe(self) -> str:
        return f"weight decay per parameter group, {len(self.optimizers)} optimizer(s)"
