"""No warning without measured harm (issue 16): NUM003 and LOS004 are warnings only when a measurement on this
program shows harm, else info with the measurement. NUM003: the stable formulation swapped in
(probes/stable_forms.py) changes this batch's loss or gradients; LOS004: a copy trained a few steps on the first
batch still carries the excess over an uninformed start."""
from __future__ import annotations

import pytest
import torch
from cases.data_sources import digits
from cases.num_cases import _log_of_softmax, _sigmoid_bce
from helpers import run_checked
from torch import nn

from nndoctor import Setup
from nndoctor.checks.numerics import GRADIENT_HARM, LOSS_HARM
from nndoctor.probes.stable_forms import measure_harm


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


def _num003(setup):
    return [f for f in run_checked(setup, select=("NUM",), budget=None).findings if f.code == "NUM003"]


def test_log_of_softmax_without_harm_is_info():
    """log(softmax) on digits at float32 values: the stable form gives the same loss and gradients."""
    found = _num003(_log_of_softmax(fixed=False))
    assert found and all(f.severity.value == "info" for f in found)
    harm = found[0].evidence["harm"]
    assert harm["loss_difference"] <= LOSS_HARM and harm["gradient_difference"] <= GRADIENT_HARM


def test_sigmoid_into_bce_is_a_warning_only_where_it_saturates():
    standardised = _num003(_sigmoid_bce(fixed=False))
    assert [f.severity.value for f in standardised] == ["info"]
    raw = _num003(_sigmoid_bce(fixed=False, raw=True))  # the sigmoid saturates: BCELoss's clamp kills the gradient
    assert [f.severity.value for f in raw] == ["warning"]
    assert raw[0].evidence["harm"]["gradient_difference"] > 0.5


def test_stable_forms_probe_against_the_closed_form():
    """The probe's two passes on a saturated sigmoid + BCELoss: as written the gradient of the saturated samples
    is lost; the stable pass's gradient is the exact sigmoid(x) - y."""
    x, y = torch.tensor([[30.0], [-0.5]]), torch.tensor([[0.0], [1.0]])

    def make():
        lin = nn.Linear(1, 1)
        with torch.no_grad():
            lin.weight.fill_(1.0)
            lin.bias.zero_()
        return nn.Sequential(lin, nn.Sigmoid())

    harm = measure_harm(make, lambda m: nn.functional.binary_cross_entropy(m(x), y))
    assert harm is not None and harm.swapped == 1
    assert harm.gradient_difference > 0.5 and harm.loss_difference > LOSS_HARM
    assert measure_harm(lambda: nn.Linear(1, 1), lambda m: m(x).sum()) is None  # nothing fragile: no measurement


def _huge_init(lr: float) -> Setup:
    torch.manual_seed(0)
    train, _ = digits()
    model = nn.Sequential(nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 10))
    for m in model:
        if isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, 0.0, 1.0)
            nn.init.zeros_(m.bias)
    return Setup(model=model, train_data=train, loss_fn=nn.CrossEntropyLoss(),
                 optimizer=lambda p: torch.optim.Adam(p, lr=lr))


@pytest.mark.parametrize("lr,severity", [(1e-3, "warning"), (1e-2, "info")])
def test_bad_initial_loss_is_a_warning_only_when_it_persists(lr, severity):
    """Logits in the tens at step 0 (loss 30.7 against ln 10): at lr 1e-3 the loss is still 14.6 after 30 steps
    on the first batch (harm); at lr 1e-2 it is 0.003 (shed at once: info)."""
    found = [f for f in run_checked(_huge_init(lr), select=("LOS",), budget=None).findings if f.code == "LOS004"]
    assert [f.severity.value for f in found] == [severity]
    assert found[0].evidence["recovery"]["steps"] == 30
