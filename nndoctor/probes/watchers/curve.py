"""The loss curve: every step's loss (the scalar passed to ``backward()``, or a framework's reported
value) and total gradient norm, both read in the hub's one host transfer per optimizer step."""
from __future__ import annotations

import math

import torch

from nndoctor.probes.watchers.base import Watcher

_NAN = torch.tensor(float("nan"))


class CurveWatcher(Watcher):
    name = "loss-curve"

    def __init__(self, run) -> None:
        super().__init__(run)
        self._pending: torch.Tensor | None = None

    def on_backward(self, loss: torch.Tensor) -> None:
        self._pending = loss.detach()

    def reads(self, optimizer):
        grads = self.run.grads(optimizer)  # of a shard, its local part: no collective
        # per-parameter norms go to the host as they are and the total is summed there: fewer ops per step
        # no gradient yet (a closure that runs backward inside step(), as Lightning's does): a total of 0
        return (self._pending if self._pending is not None else _NAN, *(torch._foreach_norm(grads) if grads else ()))

    def on_read(self, optimizer, values: list[float]) -> None:
        run = self.run
        run.step_loss = values[0] if self._pending is not None else None
        run.step_norm = math.hypot(*values[1:])  # the total gradient norm
        if self._pending is not None:
            run.losses.append(values[0])
            run.loss_owners.add(id(optimizer))
        run.grad_norms.append(run.step_norm)
        self._pending = None

    def on_loss_value(self, value: float) -> None:
        self.run.losses.append(float(value))

    def describe(self) -> str:
        return f"{len(self.run.losses)} losses and {len(self.run.grad_norms)} gradient norms"
