"""Hugging Face: ``Trainer(..., callbacks=[NNDoctorCallback()])``, then ``callback.report()``."""
from __future__ import annotations

from transformers import TrainerCallback

from nndoctor.report.model import Report
from nndoctor.live.monitor import Monitor


class NNDoctorCallback(TrainerCallback):
    """Watches ``Trainer.train`` with a Monitor (the Trainer's torch optimizer and model are seen through
    PyTorch's global hooks)."""

    def __init__(self, max_steps: int | None = None) -> None:
        self.monitor = Monitor(max_steps=max_steps)

    def on_train_begin(self, args, state, control, **kwargs):
        self.monitor.__enter__()

    def on_train_end(self, args, state, control, **kwargs):
        self.monitor.__exit__(None, None, None)

    def report(self) -> Report:
        return self.monitor.report()
