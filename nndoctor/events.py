"""The Monitor's events, declared once. Framework adapters (Lightning, Keras, Hugging Face) and the
global PyTorch hooks only translate their own events into these.

Each event is a method of ``MonitorEvents``; the docstring says when it fires.
"""
from __future__ import annotations

from typing import Any

import torch
from torch import nn


class MonitorEvents:
    def on_forward(self, module: nn.Module, inputs: tuple, kwargs: dict, training_step: bool) -> None:
        """A root module (one not called from inside another watched module) was called; ``training_step``
        is False under ``no_grad``/``inference_mode``."""

    def on_backward(self, loss: torch.Tensor) -> None:
        """``backward()`` was called on a scalar loss (before gradients are computed)."""

    def on_before_optimizer_step(self, optimizer: torch.optim.Optimizer) -> None:
        """An optimizer is about to step: gradients are final, parameters not yet updated."""

    def on_after_optimizer_step(self, optimizer: torch.optim.Optimizer) -> None:
        """An optimizer has stepped: parameters are updated."""

    def on_loss_value(self, value: float) -> None:
        """A framework reported the step's loss value (for frameworks whose optimizer torch cannot see)."""

    def on_run_end(self) -> None:
        """Training ended (normally, by ``--max-steps``, or by an exception): time to judge."""

    def on_error(self, exc: BaseException) -> Any:
        """The user's training raised ``exc``."""
