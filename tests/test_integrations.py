"""Framework callbacks with the real frameworks on tiny models: a planted bug and its clean twin each."""
from __future__ import annotations

import os

import pytest
import torch
from torch import nn

from cases.data_sources import digits


def _loud(report):
    return {f.code for f in report.findings if f.severity.value in ("error", "warning")}


# ----- Lightning -------------------------------------------------------------------------------------
def _lightning_fit(nan: bool):
    pl = pytest.importorskip("lightning.pytorch")
    from nndoctor.integrations.lightning import NNDoctorCallback

    class Module(pl.LightningModule):
        def __init__(self):
            super().__init__()
            self.net = nn.Sequential(nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 10))

        def forward(self, x):
            return self.net(torch.log(x - 0.5) if nan else x)  # log of negatives: NaN in the forward

        def training_step(self, batch, _):
            x, y = batch
            return nn.functional.cross_entropy(self(x), y)

        def configure_optimizers(self):
            return torch.optim.Adam(self.parameters(), lr=1e-3)

    torch.manual_seed(0)
    (x, y), _ = digits()
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=64, shuffle=True)
    callback = NNDoctorCallback()
    trainer = pl.Trainer(max_epochs=2, callbacks=[callback], logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False, accelerator="cpu", devices=1)
    trainer.fit(Module(), loader)
    return callback.report()


def test_lightning_finds_first_nan():
    report = _lightning_fit(nan=True)
    assert "NUM001" in report.codes()
    assert "net" in report.by_code("NUM001")[0].location or ".py:" in report.by_code("NUM001")[0].location


def test_lightning_clean_twin_is_silent():
    report = _lightning_fit(nan=False)
    assert _loud(report) == set()
    assert report.meta["steps"] > 0


# ----- Hugging Face ----------------------------------------------------------------------------------
def _hf_train(lr: float, warmup_steps: int = 0):
    transformers = pytest.importorskip("transformers")
    from nndoctor.integrations.huggingface import NNDoctorCallback

    import tempfile

    from scripts.tiny_bert import build

    model, dataset = build()

    callback = NNDoctorCallback()
    with tempfile.TemporaryDirectory() as out:
        args = transformers.TrainingArguments(output_dir=out, num_train_epochs=2, per_device_train_batch_size=16,
                                              learning_rate=lr, report_to=[], save_strategy="no",
                                              logging_strategy="no", use_cpu=True, disable_tqdm=True,
                                              warmup_steps=warmup_steps)
        transformers.Trainer(model=model, args=args, train_dataset=dataset, callbacks=[callback]).train()
    return callback.report()


def test_huggingface_finds_an_optimizer_that_changes_nothing():
    report = _hf_train(lr=0.0)
    assert "GRD002" in report.codes()


def test_huggingface_clean_twin_is_silent():
    report = _hf_train(lr=5e-4)
    assert _loud(report) == set()


def test_huggingface_warm_up_from_learning_rate_0_is_silent():
    # the linear schedule's first step has lr 0 by design: "changed none" is judged on later steps
    report = _hf_train(lr=5e-4, warmup_steps=4)
    assert _loud(report) == set()


# ----- Keras 3 (torch backend) -----------------------------------------------------------------------
def _keras_fit(nan: bool):
    os.environ.setdefault("KERAS_BACKEND", "torch")
    keras = pytest.importorskip("keras")
    if keras.backend.backend() != "torch":
        pytest.skip("keras is not on the torch backend in this process")
    from nndoctor.integrations.keras import NNDoctorCallback

    (x, y), _ = digits()
    x = x.numpy().copy()
    if nan:
        x[::7, 3] = float("nan")  # NaN in the inputs
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((64,)), keras.layers.Dense(32, activation="relu"), keras.layers.Dense(10)])
    model.compile(optimizer=keras.optimizers.Adam(1e-3),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    callback = NNDoctorCallback()
    model.fit(x, y.numpy(), epochs=3, batch_size=64, verbose=0, callbacks=[callback])
    return callback.report()


def test_keras_finds_the_loss_going_non_finite():
    report = _keras_fit(nan=True)
    assert "OFB002" in report.codes()


def test_keras_clean_twin_is_silent():
    report = _keras_fit(nan=False)
    assert _loud(report) == set()
