"""Which parameters each optimizer decays (EFF002): at an optimizer's first step, its parameter groups read
once (weight decay, learning rate, and which of their parameters are one-dimensional - biases, norm scales
and shifts - or embedding tables), named at the end through the roots seen in training forwards. No tensor
is read; parameters are held by id only."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from torch import nn

from nndoctor.probes.watchers.base import DONE, Watcher

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
    _one_d_ids: list[int] = field(default_factory=list, repr=False)  # named at the end of the run
    _other_ids: list[int] = field(default_factory=list, repr=False)


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

    def on_before_optimizer_step(self, optimizer) -> Any:
        if id(optimizer) not in self._seen and not self.broken and len(self._seen) < 8:
            self._seen.add(id(optimizer))
            try:
                self.optimizers.append(self._read(optimizer))
            except Exception:
                self.broken = True
        # read: the optimizer given (the only one whose steps the hub sees), eight, or none readable
        return DONE if optimizer is self.run.optimizer or self.broken or len(self._seen) >= 8 else None

    def _read(self, optimizer: Any) -> Optimizer:
        groups = []
        for i, g in enumerate(optimizer.param_groups):
            wd, lr = g.get("weight_decay", 0.0), g.get("lr", 0.0)
            group = Group(i, float(wd) if isinstance(wd, (int, float)) else 0.0,
                          float(lr) if isinstance(lr, (int, float)) else float("nan"))
            for p in g["params"]:
                if not p.requires_grad:
                    continue
                group.tensors += 1
                if p.dim() == 1:
                    group.one_d += 1
                    group.one_d_elements += p.numel()
                    group._one_d_ids.append(id(p))
                else:
                    group._other_ids.append(id(p))
            groups.append(group)
        return Optimizer(type(optimizer).__name__, self._sites.get(id(optimizer), ""), groups)

    def on_run_end(self) -> None:
        """Names from the roots seen in training (Lightning's first forward runs inside the first step)."""
        names: dict[int, str] = {}
        embeddings: set[int] = set()
        for r in self.run.roots.values():
            names.update({k: f"model.{v}" for k, v in r.names.items()})
            embeddings.update(id(m.weight) for m in r.modules.values() if isinstance(m, nn.Embedding))
        for opt in self.optimizers:
            for g in opt.groups:
                g.one_d_names = [names[i] for i in g._one_d_ids if i in names][:_NAMED]
                g.embeddings = [names.get(i, "an nn.Embedding weight") for i in g._other_ids if i in embeddings][:_NAMED]
                g._one_d_ids, g._other_ids = [], []

    def describe(self) -> str:
        return f"weight decay per parameter group, {len(self.optimizers)} optimizer(s)"
