"""Optimizer coverage, live: a module replaced after the optimizer was built (GRD002 says so, cause
`optimizer`), parameter groups that miss a module; a frozen module left in an AdamW with weight decay is
not harmed (AdamW skips parameters without a gradient) and stays silent."""
from __future__ import annotations

import torch
from torch import nn

import nndoctor
from helpers import toy_problem


def _train(model, opt, x, y, steps: int = 6):
    for i in range(steps):
        opt.zero_grad()
        nn.functional.cross_entropy(model(x[i * 32:(i + 1) * 32]), y[i * 32:(i + 1) * 32]).backward()
        opt.step()


def test_a_head_replaced_after_the_optimizer_was_built_is_grd002():
    with nndoctor.Monitor() as mon:
        x, y, model, opt = toy_problem(256)
        model[2] = nn.Linear(32, 3)  # the new head is in no optimizer
        _train(model, opt, x, y)
    (f,) = mon.report().by_code("GRD002")
    assert f.location == "model.2" and "replaced after the optimizer was built" in f.message
    assert f.evidence["cause"] == "optimizer" and f.evidence["replaced_after_optimizer"] == 2


def test_a_head_replaced_before_the_optimizer_is_built_is_silent():
    with nndoctor.Monitor() as mon:
        x, y, model, _ = toy_problem(256)
        model[2] = nn.Linear(32, 3)
        _train(model, torch.optim.SGD(model.parameters(), lr=0.05), x, y)
    assert mon.report().codes() == set()


def test_parameter_groups_that_miss_a_module_are_grd002():
    with nndoctor.Monitor() as mon:
        x, y, model, _ = toy_problem(256)
        opt = torch.optim.SGD([{"params": model[0].parameters(), "lr": 0.05}], lr=0.05)  # model[2] forgotten
        _train(model, opt, x, y)
    (f,) = mon.report().by_code("GRD002")
    assert f.location == "model.2" and "replaced" not in f.message


def test_a_frozen_module_in_adamw_with_weight_decay_is_silent_and_unchanged():
    with nndoctor.Monitor() as mon:
        x, y, model, _ = toy_problem(256)
        model[0].requires_grad_(False)
        frozen = model[0].weight.detach().clone()
        _train(model, torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.1), x, y)
    assert torch.equal(model[0].weight, frozen)  # torch skips parameters whose .grad is None: no decay
    assert mon.report().codes() == set()
