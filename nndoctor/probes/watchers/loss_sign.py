"""The loss's sign: steps whose ``backward()`` scalar is minus a non-negative loss (``probes/loss_sign.py``
reads the autograd graph); the judge confirms it against the curve (OFB001)."""
from __future__ import annotations

import sys

import torch
from torch import nn

from nndoctor.probes.errors import user_call_site
from nndoctor.probes.loss_sign import NON_NEGATIVE, negated_loss
from nndoctor.probes.watchers.base import Watcher, outside_nndoctor


class LossSignWatcher(Watcher):
    name = "loss-sign"

    def __init__(self, run) -> None:
        super().__init__(run)
        self._pending: str | None = None  # the backward's scalar is minus this non-negative loss
        self._trains_model: dict[int, bool] = {}
        self.negated_steps = 0
        self.negated_name = ""
        self.site: str | None = None

    def on_backward(self, loss: torch.Tensor) -> None:
        fn = loss.grad_fn
        if fn is not None and type(fn).__name__ in NON_NEGATIVE:  # the loss itself, not negated: the usual case
            self._pending = None
            return
        try:
            self._pending = negated_loss(loss)
        except Exception:  # an unusual graph: no reading
            self._pending = None
        if self._pending and self.site is None:
            self.site = user_call_site(outside_nndoctor(sys._getframe()))[0] or "loss"

    def on_before_optimizer_step(self, optimizer) -> None:
        if self._pending:
            trains = self._trains_model.get(id(optimizer))
            if trains is None:
                trains = self._trains_model[id(optimizer)] = any(
                    isinstance(p, nn.Parameter) for p in self.run.trainable_params(optimizer))
            if trains:  # not an attack's ascent on its input perturbation
                self.negated_steps += 1
                self.negated_name = self._pending
        self._pending = None

    def describe(self) -> str:
        return "the sign of the loss passed to backward()"
