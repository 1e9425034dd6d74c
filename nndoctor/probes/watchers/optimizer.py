"""Does the optimizer change the parameters it holds (GRD002)? Three measurements:

- parameters of a trained model that are in no optimizer that stepped;
- "stepped but changed none": per-parameter (norm, sum) before the first step whose learning rate is
  above 0, compared with the same numbers before each of the next steps (cumulatively: a tiny warm-up
  step may round to no change at all) until one differs, for at most ``WINDOW`` steps. A few floats per
  parameter tensor, read in the hub's one transfer per step; no parameter is cloned. Steps with learning
  rate 0 (a warm-up from 0) are never judged; a run whose every step had learning rate 0 is;
- an optimizer built while backward() runs batch after batch, that never steps (``optimizer.step()``
  dropped), located at the line that built it.
"""
from __future__ import annotations

import weakref
from typing import Any

import torch

from nndoctor.probes.sharded import local
from nndoctor.probes.watchers.base import DONE, Watcher

WINDOW = 3  # steps with a learning rate above 0 compared with the first before "changed none" is said


def max_lr(optimizer: torch.optim.Optimizer) -> float | None:
    """The largest learning rate over the parameter groups (None when it cannot be read without a sync)."""
    rates = [g.get("lr", 0.0) for g in optimizer.param_groups]
    if any(isinstance(r, torch.Tensor) and r.device.type != "cpu" for r in rates):
        return None
    return max((float(r) for r in rates), default=0.0)


class _Updates:
    """One optimizer's "did the step change anything" record."""

    def __init__(self) -> None:
        self.first: list[float] | None = None  # (norms, sums) before the first step with lr > 0
        self.compared = 0  # later readings compared with it
        self.with_grad = 0
        self.changed: int | None = None  # None: not judged yet
        self.done = False
        self.lr = 0.0
        self.zero_lr_steps = 0  # steps taken at learning rate 0 before any above 0


class OptimizerWatcher(Watcher):
    name = "parameters-updated"

    def __init__(self, run) -> None:
        super().__init__(run)
        self.created: dict[int, tuple[Any, str]] = {}  # id -> (weakref to the optimizer, user's line that built it)
        self.stepped: dict[int, Any] = {}  # id -> weakref of optimizers that stepped
        self.updates: dict[int, _Updates] = {}
        if run.optimizer is not None:
            self.created[id(run.optimizer)] = (weakref.ref(run.optimizer), "optimizer")

    @property
    def backwards(self) -> int:
        """backward() calls on a scalar (the hub counts them: no event per backward here)."""
        return self.run.backwards

    def on_optimizer_created(self, optimizer, site: str) -> None:
        self.created[id(optimizer)] = (weakref.ref(optimizer), site)

    # ----- stepped but changed none ---------------------------------------------------------------
    def _stats(self, optimizer) -> torch.Tensor | None:
        params = [local(p.detach()) for p in self.run.trainable_params(optimizer)]  # a rank's shard: no collective
        if not params or any(p.is_sparse for p in params):
            return None
        try:
            with torch.no_grad():
                return torch.cat([torch.stack(torch._foreach_norm(params)).float(),
                                  torch.stack([p.sum() for p in params]).float()])
        except (RuntimeError, TypeError):  # parameters on several devices, an exotic tensor: no reading
            return None

    def reads(self, optimizer):
        u = self.updates.get(id(optimizer))
        if u is None:
            u = self.updates[id(optimizer)] = _Updates()
        if u.done:  # the given optimizer judged: no reading is needed any more
            return DONE if optimizer is self.run.optimizer else ()
        if u.first is None:
            lr = max_lr(optimizer)
            if lr is not None and lr <= 0:
                u.zero_lr_steps += 1
                return ()  # a learning rate of 0 changes nothing, by design: judge a later step
            u.lr = lr or 0.0
        stats = self._stats(optimizer)
        if stats is None:
            u.done = True
            return ()
        return (stats,)

    def on_read(self, optimizer, values: list[float]) -> None:
        u = self.updates[id(optimizer)]
        if u.first is None:
            u.first = values
            return
        self._compare(optimizer, u, values)

    def _compare(self, optimizer, u: _Updates, values: list[float]) -> None:
        params = self.run.trainable_params(optimizer)
        n = len(params)
        if len(values) != 2 * n or len(u.first) != 2 * n:
            u.done = True  # the groups changed: no comparison
            return
        graded = [i for i, p in enumerate(params) if p.grad is not None]
        u.with_grad = len(graded)
        u.changed = sum(values[i] != u.first[i] or values[n + i] != u.first[n + i] for i in graded)
        u.compared += 1
        if u.changed or u.compared >= WINDOW:
            u.done = True

    def on_after_optimizer_step(self, optimizer) -> Any:
        ref = self.stepped.get(id(optimizer))
        if ref is None or ref() is not optimizer:  # (a new optimizer may reuse a collected one's id)
            self.stepped[id(optimizer)] = weakref.ref(optimizer)
        return DONE if optimizer is self.run.optimizer else None  # the given one: the only one whose steps come

    def on_run_end(self) -> None:
        # a run too short for a comparison at the next step: read once more now (off the hot path)
        for oid, ref in self.stepped.items():
            u, optimizer = self.updates.get(oid), ref()
            if optimizer is None or u is None or u.done or u.first is None or u.compared:
                continue
            stats = self._stats(optimizer)
            if stats is not None:
                self._compare(optimizer, u, stats.tolist())

    # ----- what the judge reads --------------------------------------------------------------------
    def optimizers(self) -> list[torch.optim.Optimizer]:
        return [o for o in (ref() for ref in self.stepped.values()) if o is not None]

    def never_stepped(self) -> list[tuple[torch.optim.Optimizer, str]]:
        """Optimizers built (or given) that never stepped and hold parameters that now have gradients."""
        found = []
        for oid, (ref, site) in self.created.items():
            optimizer = ref()
            if optimizer is None or oid in self.stepped:
                continue
            if any(p.grad is not None for p in self.run.trainable_params(optimizer)):
                found.append((optimizer, site))
        return found

    def describe(self) -> str:
        judged = sum(u.changed is not None for u in self.updates.values())
        return (f"{len(self.stepped)} optimizer(s) stepping, {judged} checked for changing their parameters; "
                f"{self.backwards} backward calls")
