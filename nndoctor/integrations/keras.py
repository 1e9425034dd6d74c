"""Keras 3 on the torch backend: ``model.fit(..., callbacks=[NNDoctorCallback()])``, then ``.report()``.

Keras layers are torch modules on this backend, so forwards and backward are seen by the Monitor's
global hooks; Keras's optimizer is not a torch optimizer, so the loss values come from Keras's logs.
"""
from __future__ import annotations

import keras

from nndoctor.checks.keras_loss import judge_compiled_loss
from nndoctor.report.model import Report
from nndoctor.live.monitor import Monitor


class NNDoctorCallback(keras.callbacks.Callback):
    def __init__(self) -> None:
        super().__init__()
        if keras.backend.backend() != "torch":
            raise RuntimeError("nndoctor's Keras callback needs the torch backend (KERAS_BACKEND=torch)")
        self.monitor = Monitor()
        self.loss_findings: list = []  # from the compiled loss itself (model.loss), read before training

    def on_train_begin(self, logs=None):
        try:
            self.loss_findings = judge_compiled_loss(self.model)
        except Exception:  # an unusual model or loss: nothing to say about it, never an error of the fit
            self.loss_findings = []
        self.monitor.__enter__()

    def on_train_batch_end(self, batch, logs=None):
        if logs and "loss" in logs:
            self.monitor.on_loss_value(float(logs["loss"]))

    def on_train_end(self, logs=None):
        self.monitor.__exit__(None, None, None)
        if self.loss_findings:  # judged with the watchers' findings, before the report is built
            # one LOS001: the compiled loss names the layer; the live loss-input watcher may see the same
            # softmax reach F.cross_entropy (Keras's torch backend calls it) and could only name the fit() line
            codes = {f.code for f in self.loss_findings}
            self.monitor._found = [[f for f in found if f.code not in codes] for found in self.monitor._found]
            self.monitor._found.append(self.loss_findings)
            self.monitor.findings = [f for found in self.monitor._found for f in found]

    def report(self) -> Report:
        return self.monitor.report()
