"""The first NaN/Inf of a live run: the curve watcher's loss and gradient norm are the cheap guard; when
it trips, the last training forward is replayed on a copy of the model with op-level instrumentation
(``probes/nonfinite.py``), once per run. Healthy steps pay nothing here."""
from __future__ import annotations

import copy
import math
from typing import Any

import torch

from nndoctor.probes.sharded import local
from nndoctor.probes.watchers.amp import replay_autocast
from nndoctor.probes.watchers.base import Watcher


class NonFiniteWatcher(Watcher):
    name = "non-finite"

    def __init__(self, run) -> None:
        super().__init__(run)
        self.trip: dict[str, Any] | None = None  # {"step", "loss", "births", "bad_grads"} of the first trip

    def on_before_optimizer_step(self, optimizer) -> None:
        run = self.run
        loss = run.step_loss
        if self.trip is not None or ((loss is None or math.isfinite(loss)) and math.isfinite(run.step_norm)):
            return
        call = run.last_train_call
        if call is None:
            return
        from nndoctor.probes.nonfinite import FirstNonFinite

        module, inputs, kwargs = call
        names = run.root(module).names
        bad = [names.get(id(p), "?") for p in run.trainable_params(optimizer)
               if p.grad is not None and not bool(torch.isfinite(local(p.grad)).all())]
        run.replaying = True
        try:
            replica = copy.deepcopy(module)
            with torch.no_grad(), replay_autocast(run), FirstNonFinite(replica) as probe:  # fp16 overflows again
                replica(*inputs, **kwargs)
            births = probe.births
        except Exception:
            births = []
        finally:
            run.replaying = False
        self.trip = {"step": run.steps + 1, "loss": float("nan") if loss is None else loss, "births": births,
                     "bad_grads": bad}

    def describe(self) -> str:
        return "loss and gradient norm finite at every step" if self.trip is None else \
            f"first non-finite value at step {self.trip['step']}, replayed on a copy"
