"""MOD003 carries evidence.cause="batch-size" only where a measurement shows the harm: a copy's forward pass
on the smallest batch the loader yields raises (batch-norm with one value per channel). Statistics of 2-3
samples are noise, a risk no one-pass measurement shows: that finding carries no cause."""
from __future__ import annotations

import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from cases.data_sources import diabetes
from cases.mod_cases import CASES
from helpers import run_checked
from nndoctor import Setup

BY_NAME = {c.name: c for c in CASES}


def _mod003(setup):
    return [f for f in run_checked(setup, select=("MOD",), budget=None).findings if f.code == "MOD003"]


def test_last_batch_of_one_is_measured_and_names_batch_size():
    case = BY_NAME["batchnorm-last-batch-of-one"]
    found = _mod003(case.build())
    assert len(found) == 1 and found[0].location == "model.1" and found[0].severity.value == "error"
    assert found[0].evidence["cause"] == "batch-size"
    assert "Expected more than 1 value per channel" in found[0].evidence["measured_failure"]
    assert _mod003(case.twin()) == []  # drop_last=True: no tiny batch, no finding


def _last_batch_of(last: int) -> Setup:
    """350 + ``last`` samples in batches of 50: the last batch of every epoch has ``last`` samples."""
    torch.manual_seed(0)
    (x, y), _ = diabetes()
    n = 350 + last
    loader = DataLoader(TensorDataset(x[:n], y[:n, None]), batch_size=50, shuffle=True)
    model = nn.Sequential(nn.Linear(10, 32), nn.BatchNorm1d(32), nn.ReLU(), nn.Linear(32, 1))
    return Setup(model=model, train_data=loader, loss_fn=nn.MSELoss())


def test_tiny_batch_without_a_crash_carries_no_cause():
    found = _mod003(_last_batch_of(3))
    assert len(found) == 1 and "cause" not in found[0].evidence and found[0].severity.value == "info"
