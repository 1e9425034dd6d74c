"""The correct-model suite through the Monitor: each clean model trained in an ordinary loop (epochs,
validation in eval mode without gradients, back to train mode) must get no error and no warning from the
live checks (modes, stale gradients, negated loss, the loss curve, DDP probes idle in one process)."""
from __future__ import annotations

import pytest
import torch

import nndoctor
from cases.clean_models import CLEAN
from nndoctor.data import DataSource, call_model, split_batch
from nndoctor.sandbox import optimizer_for

EPOCHS = 3  # digits: 66 optimizer steps, past the live curve's minimum of 30


def _loss(setup: nndoctor.Setup, model: torch.nn.Module, batch) -> torch.Tensor:
    if setup.step is not None:
        return setup.step(model, batch)
    inputs, targets = split_batch(batch)
    return setup.loss_fn(call_model(model, inputs), targets)


@pytest.mark.parametrize("name", sorted(CLEAN))
def test_clean_model_trained_under_the_monitor_is_silent(name):
    setup = CLEAN[name]()
    model = setup.model
    opt = optimizer_for(setup.optimizer, model, model)  # as the playbook builds it, over the model itself
    train, val = DataSource(setup.train_data), DataSource(setup.val_data) if setup.val_data is not None else None
    with nndoctor.Monitor() as mon:
        for _ in range(EPOCHS):
            model.train()
            for batch in train.batches():
                opt.zero_grad()
                _loss(setup, model, batch).backward()
                opt.step()
            if val is not None:
                model.eval()
                with torch.no_grad():
                    for batch in val.batches():
                        _loss(setup, model, batch)
    report = mon.report()
    assert report.meta["steps"] >= EPOCHS
    loud = [(f.code, f.location, f.message) for f in report.findings if f.severity.value in ("error", "warning")]
    assert loud == [], f"false alarms on {name}: {loud}"
