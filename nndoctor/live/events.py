"""The Monitor's events, declared once. The global PyTorch hooks and the framework adapters (Lightning,
Keras, Hugging Face) only translate their own events into these; the hub passes each one on to the
watchers that define a method of the same name (``nndoctor/probes/watchers/``).

Each event is a method of ``MonitorEvents``; the docstring says when it fires.
"""
from __future__ import annotations

from typing import Any

import torch
from torch import nn

EVENTS = ("on_forward", "on_backward", "on_optimizer_created", "on_before_optimizer_step",
          "on_after_optimizer_step", "on_loss_value", "on_error", "on_run_end")


class MonitorEvents:
    def on_forward(self, module: nn.Module, inputs: tuple, kwargs: dict, training_step: bool) -> None:
        """A root module (one not called from inside another module) was called; ``training_step``
        is False under ``no_grad``/``inference_mode``."""

    def on_backward(self, loss: torch.Tensor) -> None:
        """``backward()`` was called on a scalar loss (before gradients are computed)."""

    def on_optimizer_created(self, optimizer: torch.optim.Optimizer, site: str) -> None:
        """A torch optimizer was built while the Monitor watched; ``site`` is the user's ``file.py:line``."""

    def on_before_optimizer_step(self, optimizer: torch.optim.Optimizer) -> None:
        """An optimizer is about to step: gradients are final, parameters not yet updated. (Watchers get
        this step's readings through ``reads``/``on_read`` first, then this event.)"""

    def on_after_optimizer_step(self, optimizer: torch.optim.Optimizer) -> None:
        """An optimizer has stepped: parameters are updated."""

    def on_loss_value(self, value: float) -> None:
        """A framework reported the step's loss value (for frameworks whose optimizer torch cannot see)."""

    def on_error(self, exc: BaseException) -> Any:
        """The user's training raised ``exc`` (its traceback names the module whose forward raised it)."""

    def on_run_end(self) -> None:
        """Training ended (normally, by ``--max-steps``, or by an exception): the last measurements."""


class StopTraining(BaseException):
    """Raised from an optimizer step hook to stop the script after ``max_steps`` (BaseException so that
    the user's ``except Exception`` does not swallow it)."""
