"""The negated-loss reading (probe) and the Monitor's OFB001 on it, with the twins that must stay silent."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import nndoctor
from helpers import toy_problem
from nndoctor.probes.loss_sign import negated_loss

X = torch.randn(8, 3, requires_grad=True)
Y = torch.tensor([0, 1, 2, 0, 1, 2, 0, 1])

NEGATED = {
    "minus": lambda: -F.cross_entropy(X, Y),
    "times minus one": lambda: -1.0 * F.cross_entropy(X, Y),
    "divided by a negative": lambda: F.mse_loss(X, X.detach() * 2) / -2,
    "one minus": lambda: 1.0 - F.binary_cross_entropy_with_logits(X, torch.rand(8, 3)),
    "minus a mean": lambda: -(F.cross_entropy(X, Y, reduction="none") * 0.5).mean(),
}
NOT_NEGATED = {
    "the loss": lambda: F.cross_entropy(X, Y),
    "a positive scaling": lambda: F.cross_entropy(X, Y) / 4,
    "minus minus": lambda: -(-F.cross_entropy(X, Y)),
    "a difference of two losses (a penalty or a bonus)": lambda: F.cross_entropy(X, Y) - 0.1 * F.mse_loss(X, X * 0),
    "minus something that is not a loss (a log-likelihood)": lambda: -torch.log_softmax(X, 1).mean(),
}


@pytest.mark.parametrize("name", NEGATED)
def test_negations_of_a_non_negative_loss_are_read(name):
    assert negated_loss(NEGATED[name]()) is not None


@pytest.mark.parametrize("name", NOT_NEGATED)
def test_everything_else_is_not(name):
    assert negated_loss(NOT_NEGATED[name]()) is None


def _train(sign: float, maximize: bool = False) -> nndoctor.Report:
    torch.manual_seed(0)
    x, y = torch.randn(64, 10), torch.randint(0, 3, (64,))
    model = nn.Sequential(nn.Linear(10, 32), nn.ReLU(), nn.Linear(32, 3))
    opt = torch.optim.SGD(model.parameters(), lr=0.05, maximize=maximize)
    with nndoctor.Monitor(model, opt) as mon:
        for _ in range(40):
            opt.zero_grad()
            (sign * F.cross_entropy(model(x), y)).backward()
            opt.step()
    return mon.report()


def test_minimising_minus_the_loss_is_ofb001_with_the_line():
    report = _train(-1.0)
    (finding,) = report.by_code("OFB001")
    assert "test_loss_sign.py:" in finding.location
    assert finding.evidence["error_last"] > finding.evidence["error_first"]


@pytest.mark.parametrize("sign,maximize", [(1.0, False), (-1.0, True)], ids=["plain", "negated-and-maximize"])
def test_twins_that_minimise_the_error_are_silent(sign, maximize):
    assert _train(sign, maximize).codes() == set()


def test_an_adversarial_ascent_on_the_input_is_not_a_flipped_sign():
    x, y, model, opt = toy_problem()
    with nndoctor.Monitor(model, opt) as mon:
        for _ in range(30):
            delta = torch.zeros_like(x, requires_grad=True)
            attack = torch.optim.SGD([delta], lr=0.1)
            for _ in range(2):  # maximise the loss over the perturbation: minus the loss, on purpose
                attack.zero_grad()
                (-F.cross_entropy(model(x + delta), y)).backward()
                attack.step()
            opt.zero_grad()
            F.cross_entropy(model(x + delta.detach()), y).backward()
            opt.step()
    assert "OFB001" not in mon.report().codes()
