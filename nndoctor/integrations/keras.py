"""Keras 3 on the torch backend: ``model.fit(..., callbacks=[NNDoctorCallback()])``, then ``.report()``.

Keras layers are torch modules on this backend, so forwards and backward are seen by the Monitor's
global hooks; Keras's optimizer is not a torch optimizer, so the loss values come from Keras's logs.
"""
from __future__ import annotations

import keras

from nndoctor.report.model import Report
from nndoctor.live.monitor import Monitor


class NNDoctorCallback(keras.callbacks.Callback):
    def __init__(self) -> None:
        super().__init__()
        if keras.backend.backend() != "torch":
            raise RuntimeError("nndoctor's Keras callback needs the torch backend (KERAS_BACKEND=torch)")
        self.monitor = Monitor()

    def on_train_begin(self, logs=None):
        self.monitor.__enter__()

    def on_train_batch_end(self, batch, logs=None):
        if logs and "loss" in logs:
            self.monitor.on_loss_value(float(logs["loss"]))

    def on_train_end(self, logs=None):
        self.monitor.__exit__(None, None, None)

    def report(self) -> Report:
        return self.monitor.report()
