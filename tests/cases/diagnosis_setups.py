"""Differential diagnosis setups for tests/test_diagnosis.py (not a *_cases module: test_cases does not run
them twice): one planted cause per case, the symptom being a model that does not overfit one batch, each with
a twin that differs only by the fix. ``CAUSES`` maps each case to the cause it must confirm."""
from __future__ import annotations

import torch
from torch import nn

from nndoctor import Setup

from . import Case
from .data_sources import diabetes, digits


def _digits(optimizer, model: nn.Module | None = None) -> Setup:
    torch.manual_seed(0)
    train, val = digits()
    model = model or nn.Sequential(nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 10))
    return Setup(model=model, train_data=train, val_data=val, loss_fn=nn.CrossEntropyLoss(), optimizer=optimizer)


def _regression(last: nn.Module | None = None, scale: float = 1.0, lr: float = 1e-3, shift: float = 0.0) -> Setup:
    torch.manual_seed(0)
    (xt, yt), (xv, yv) = diabetes()
    layers = [nn.Linear(10, 64), nn.ReLU(), nn.Linear(64, 1)] + ([last] if last is not None else [])
    yt, yv = shift + scale * yt[:, None], shift + scale * yv[:, None]
    return Setup(model=nn.Sequential(*layers), train_data=(xt, yt), val_data=(xv, yv),
                 loss_fn=nn.MSELoss(), optimizer=lambda p: torch.optim.Adam(p, lr=lr), batch_size=32)


def _offset_targets(standardised: bool) -> Setup:
    """Targets with a large offset against their spread (3000 +- 30, like temperatures in tenths of a kelvin)
    under SGD: the offset dominates the gradient, so any rate stable for it learns the shape far too slowly,
    and standardising alone leaves the rate tuned to the raw scale. The twin standardises the targets and
    uses the rate retuned for them (the fix is both changes)."""
    torch.manual_seed(0)
    (xt, _), (xv, _) = diabetes()
    w = torch.randn(10, generator=torch.Generator().manual_seed(1))

    def target(x: torch.Tensor) -> torch.Tensor:  # a smooth function of the inputs: learnable, noise-free
        return torch.tanh(x @ w / 3)[:, None]

    yt, yv = target(xt), target(xv)
    mean, std = yt.mean(), yt.std()
    yt, yv = (yt - mean) / std, (yv - mean) / std
    if not standardised:
        yt, yv = 3000 + 30 * yt, 3000 + 30 * yv
    model = nn.Sequential(nn.Linear(10, 64), nn.ReLU(), nn.Linear(64, 1))
    lr = 0.1 if standardised else 1e-5
    return Setup(model=model, train_data=(xt, yt), val_data=(xv, yv), loss_fn=nn.MSELoss(),
                 optimizer=lambda p: torch.optim.SGD(p, lr=lr), batch_size=32)


def _raw_inputs(standardised: bool) -> Setup:
    """Regression features in raw units around 5000 +- 1000 (a sensor's counts) under Adam: the first layer's
    pre-activations are thousands and mostly the same offset, so the loss stalls far from the goal at any
    rate; the twin standardises the features."""
    torch.manual_seed(0)
    (xt, yt), (xv, yv) = diabetes()
    if not standardised:
        xt, xv = 5000 + 1000 * xt, 5000 + 1000 * xv
    model = nn.Sequential(nn.Linear(10, 64), nn.ReLU(), nn.Linear(64, 1))
    return Setup(model=model, train_data=(xt, yt[:, None]), val_data=(xv, yv[:, None]), loss_fn=nn.MSELoss(),
                 optimizer=lambda p: torch.optim.Adam(p, lr=1e-3), batch_size=32)


def _dropout_momentum(p: float) -> Setup:
    """Dropout 0.9 under SGD with momentum: each step's gradient comes from a different tenth of the units,
    and momentum adds them up, so the loss oscillates at any rate (OFB003, not the rate's fault)."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(64, 128), nn.ReLU(), nn.Dropout(p), nn.Linear(128, 10))
    return _digits(lambda params: torch.optim.SGD(params, lr=0.1, momentum=0.9), model)


def _softmax_before_cross_entropy(planted: bool) -> Setup:
    """Softmax on the output, then CrossEntropyLoss (which applies log-softmax itself): the gradients shrink,
    a 10x rate would compensate, but the fix is removing the softmax (LOS001 found it first)."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 10), *([nn.Softmax(dim=1)] if planted else []))
    return _digits(_sgd(0.1), model)


def _sgd(lr: float, weight_decay: float = 0.0):
    return lambda p: torch.optim.SGD(p, lr=lr, weight_decay=weight_decay)


def _adam(p):
    return torch.optim.Adam(p, lr=1e-3)


def _zero_init(planted: bool) -> Setup:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 10))
    if planted:
        for p in model.parameters():
            nn.init.zeros_(p)
    return _digits(_adam, model)


def _dropout(p: float) -> Setup:
    torch.manual_seed(0)
    return _digits(_adam, nn.Sequential(nn.Linear(64, 128), nn.ReLU(), nn.Dropout(p), nn.Linear(128, 10)))


def _width(width: int) -> Setup:
    torch.manual_seed(0)
    return _digits(_adam, nn.Sequential(nn.Linear(64, width), nn.ReLU(), nn.Linear(width, 10)))


def _case(name, build, twin, code="OFB004", select=("OFB",)) -> Case:
    return Case(name, build, (code,), twin=twin, select=select)


CAUSES = {
    "diagnosis-sgd-lr-1e-7": "learning-rate",
    "diagnosis-adam-lr-1e-5-regression": "learning-rate",
    "diagnosis-sgd-lr-10": "learning-rate",
    "diagnosis-weight-decay-1": "regularisation",
    "diagnosis-dropout-0.95": "regularisation",
    "diagnosis-all-zero-init": "initialisation",
    "diagnosis-sigmoid-on-standardised-regression": "activation",
    "diagnosis-unscaled-regression-targets": "preprocessing",
    "diagnosis-width-1-bottleneck": "architecture",
    "diagnosis-offset-targets-under-sgd": "preprocessing",
    "diagnosis-targets-in-thousands-under-adam": "preprocessing",
    "diagnosis-raw-inputs-around-5000": "preprocessing",
    "diagnosis-dropout-0.9-momentum-oscillates": "regularisation",
    "diagnosis-softmax-before-cross-entropy": "activation",
}

CASES = [
    _case("diagnosis-sgd-lr-1e-7", lambda: _digits(_sgd(1e-7)), lambda: _digits(_sgd(0.1))),
    _case("diagnosis-adam-lr-1e-5-regression", lambda: _regression(lr=1e-5), lambda: _regression(lr=1e-3)),
    _case("diagnosis-sgd-lr-10", lambda: _digits(_sgd(10.0)), lambda: _digits(_sgd(0.1)), code="OFB002"),
    _case("diagnosis-weight-decay-1", lambda: _digits(_sgd(0.1, 1.0)), lambda: _digits(_sgd(0.1, 1e-4))),
    _case("diagnosis-dropout-0.95", lambda: _dropout(0.95), lambda: _dropout(0.5)),
    _case("diagnosis-all-zero-init", lambda: _zero_init(True), lambda: _zero_init(False)),
    _case("diagnosis-sigmoid-on-standardised-regression", lambda: _regression(nn.Sigmoid()), lambda: _regression()),
    _case("diagnosis-unscaled-regression-targets", lambda: _regression(scale=1000.0), lambda: _regression()),
    _case("diagnosis-width-1-bottleneck", lambda: _width(1), lambda: _width(128)),
    _case("diagnosis-offset-targets-under-sgd", lambda: _offset_targets(False), lambda: _offset_targets(True)),
    # Adam moves the output about lr per step: targets in the thousands need a rate tuned to the raw scale,
    # which hides the scale; standardising and retuning is tried first
    _case("diagnosis-targets-in-thousands-under-adam", lambda: _regression(scale=750.0, shift=1500.0, lr=1e-4),
          lambda: _regression()),
    _case("diagnosis-raw-inputs-around-5000", lambda: _raw_inputs(False), lambda: _raw_inputs(True)),
    _case("diagnosis-dropout-0.9-momentum-oscillates", lambda: _dropout_momentum(0.9), lambda: _dropout_momentum(0.2),
          code="OFB003"),
    # the loss check (LOS001) runs first: its mechanical fix is tried before any guess
    _case("diagnosis-softmax-before-cross-entropy", lambda: _softmax_before_cross_entropy(True),
          lambda: _softmax_before_cross_entropy(False), select=("LOS", "OFB")),
]
