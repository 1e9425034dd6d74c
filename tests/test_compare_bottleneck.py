"""A bottleneck confirmed by the compare step on its own: a width-2 hidden layer in a deeper MLP can come
close to memorising one batch (error 0.03 against the goal's 0.02: no one-batch diagnosis runs) yet leave
digits far below logistic regression. CMP001 confirms ``architecture`` by training a copy with the layer
widened (checks/compare_causes.py, checks/bottleneck.py); the one-batch step is left out here so that only
the compare step's own experiment can confirm it. The twin, 64 units wide, gets nothing loud."""
from __future__ import annotations

import pytest
import torch
from cases.data_sources import digits
from helpers import run_checked
from torch import nn

from nndoctor import Setup


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


def _deep(width: int) -> Setup:
    torch.manual_seed(0)
    train, val = digits()
    model = nn.Sequential(nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, width), nn.ReLU(), nn.Linear(width, 64),
                          nn.ReLU(), nn.Linear(64, 10))
    return Setup(model=model, train_data=train, val_data=val, loss_fn=nn.CrossEntropyLoss(),
                 optimizer=lambda p: torch.optim.Adam(p, lr=1e-3))


def test_width_2_bottleneck_is_confirmed_on_the_whole_set():
    report = run_checked(_deep(2), select=("CMP001",), budget=None)
    f = report.by_code("CMP001")[0]
    assert f.evidence.get("cause") == "architecture" and f.severity.value == "error", f.message
    assert f.location == "model.2" and "widened from 2" in f.evidence["verified_fix"]["summary"]
    assert "accuracy" in f.evidence["verified_fix"]["summary"]  # scored on the evaluation samples, not one batch
    assert "Only a hint" not in f.message


def test_wide_twin_is_silent():
    report = run_checked(_deep(64), select=("CMP001",), budget=None)
    assert not [f for f in report.findings if f.evidence.get("cause") == "architecture"]
    assert [(f.code, f.message) for f in report.findings if f.severity.value in ("error", "warning")] == []
