"""Gradients never zeroed (GRD005): does a backward find the previous step's gradients still in ``.grad``?

One leaf hook on one parameter per optimizer; the verdict of each step is a device flag read in the
hub's one host transfer.
"""
from __future__ import annotations

from typing import Any

import torch

from nndoctor.probes.sharded import local
from nndoctor.probes.watchers.base import Watcher


class StaleGradientsWatcher(Watcher):
    name = "zeroed-gradients"

    def __init__(self, run) -> None:
        super().__init__(run)
        self._states: dict[int, dict[str, Any]] = {}
        self._handles: list[Any] = []
        self.stale_steps = 0

    def _state(self, optimizer) -> dict[str, Any]:
        state = self._states.get(id(optimizer))
        if state is None:
            # "seen": the optimizer's step count at the last backward that reached it (the hub counts steps, so
            # no event after each step is needed to tell the first backward after a step)
            state = self._states[id(optimizer)] = {"seen": self.run.steps_of.get(id(optimizer), 0), "stale": None}
            params = self.run.trainable_params(optimizer)
            if params:
                self._handles.append(params[0].register_hook(self._hook(params[0], state, id(optimizer))))
        return state

    def _hook(self, param: torch.Tensor, state: dict[str, Any], optimizer_id: int):
        steps_of = self.run.steps_of

        def hook(grad: torch.Tensor) -> None:
            # Runs before the new gradient is accumulated into .grad. The first backward after a step that
            # finds the old gradient still there raises a suspicion (a device flag, read at the next step);
            # a later backward that finds .grad emptied clears it. So only a step that really uses gradients
            # carried over from before the previous step counts: not a GAN generator's backward that passes
            # through the discriminator, whose gradients are zeroed before the discriminator's own step.
            steps = steps_of.get(optimizer_id, 0)
            if param.grad is None:
                state["stale"] = None
            elif steps != state["seen"]:  # the first backward since this optimizer stepped
                state["stale"] = (local(param.grad) != 0).any()  # a shard: no collective
            elif state["stale"] is not None:
                state["stale"] = state["stale"] & (local(param.grad) != 0).any()
            state["seen"] = steps

        return hook

    def reads(self, optimizer):
        stale = self._state(optimizer)["stale"]
        return (stale,) if stale is not None else ()

    def on_read(self, optimizer, values: list[float]) -> None:
        self.stale_steps += int(values[0] > 0)
        self._states[id(optimizer)]["stale"] = None

    def stop(self) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles.clear()

    def describe(self) -> str:
        return f"gradients zeroed between the steps of {len(self._states)} optimizer(s)"
