"""The Keras callback judges the compiled loss path: from_logits=True after a softmax/sigmoid last layer is
LOS001 at that layer; the fixed twins (no activation, or from_logits=False) are silent."""
from __future__ import annotations

import os

import numpy as np
import pytest

os.environ.setdefault("KERAS_BACKEND", "torch")
keras = pytest.importorskip("keras")
if keras.backend.backend() != "torch":
    pytest.skip("needs KERAS_BACKEND=torch", allow_module_level=True)

from nndoctor.integrations.keras import NNDoctorCallback  # noqa: E402


def _fit(activation, from_logits: bool, binary: bool = False):
    keras.utils.set_random_seed(0)
    x = np.random.default_rng(0).normal(size=(128, 8)).astype("float32")
    y = (x[:, 0] > 0).astype("float32")[:, None] if binary else (x[:, 0] > 0).astype("int64") + (x[:, 1] > 0)
    model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(16, activation="relu"),
                              keras.layers.Dense(1 if binary else 3, activation=activation, name="out")])
    loss = (keras.losses.BinaryCrossentropy if binary else keras.losses.SparseCategoricalCrossentropy)(from_logits=from_logits)
    model.compile(optimizer="adam", loss=loss)
    callback = NNDoctorCallback()
    model.fit(x, y, epochs=2, batch_size=32, verbose=0, callbacks=[callback])
    return callback.report()


@pytest.mark.parametrize("binary", [False, True], ids=["softmax", "sigmoid"])
def test_from_logits_after_a_squashing_layer_is_los001(binary):
    (finding,) = _fit("sigmoid" if binary else "softmax", from_logits=True, binary=binary).by_code("LOS001")
    assert finding.location == "model.out" and finding.evidence["cause"] == "activation"


@pytest.mark.parametrize("activation,from_logits", [(None, True), ("softmax", False)], ids=["logits", "probabilities"])
def test_consistent_keras_loss_is_silent(activation, from_logits):
    report = _fit(activation, from_logits)
    assert "LOS001" not in report.codes()
    assert [f.code for f in report.findings if f.severity.value in ("error", "warning")] == []
