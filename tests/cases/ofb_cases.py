"""OFB: overfitting a single batch. Each case plants a bug in the loss or the optimizer; its twin has the fix."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from nndoctor import Setup

from . import Case
from .data_sources import digits


def _mlp() -> nn.Module:
    return nn.Sequential(nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 10))


def _digits(optimizer, loss_fn=None) -> Setup:
    torch.manual_seed(0)
    train, val = digits()
    return Setup(model=_mlp(), train_data=train, val_data=val, loss_fn=loss_fn or nn.CrossEntropyLoss(),
                 optimizer=optimizer)


def _maximize(fixed: bool) -> Setup:
    return _digits(lambda p: torch.optim.Adam(p, lr=1e-3, maximize=not fixed))


def _log_likelihood_as_loss(fixed: bool) -> Setup:
    def nll(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        log_likelihood = F.log_softmax(logits, dim=1).gather(1, y[:, None]).mean()
        return -log_likelihood if fixed else log_likelihood  # bug: the likelihood is maximised, not its negative

    return _digits(lambda p: torch.optim.Adam(p, lr=1e-3), loss_fn=nll)


def _learning_rate(lr: float, momentum: float = 0.0):
    return lambda p: torch.optim.SGD(p, lr=lr, momentum=momentum)


def _multilabel_dropout(optimizer) -> Setup:
    """Two labels per digit (even? at least 5?) from an MLP with dropout."""
    torch.manual_seed(0)
    (x, y), _ = digits()
    labels = torch.stack([(y % 2 == 0), (y >= 5)], dim=1).float()
    model = nn.Sequential(nn.Linear(64, 64), nn.ReLU(), nn.Dropout(0.2), nn.Linear(64, 2))
    return Setup(model=model, train_data=(x, labels), loss_fn=nn.BCEWithLogitsLoss(), optimizer=optimizer)


class _Augmented(torch.utils.data.Dataset):
    """Digits with additive Gaussian noise drawn anew at every read (``noise`` 0: no augmentation)."""

    def __init__(self, x, y, noise: float):
        self.x, self.y, self.noise = x, y, noise

    def __len__(self):
        return len(self.y)

    def __getitem__(self, i):
        x = self.x[i]
        return (x + self.noise * torch.randn_like(x) if self.noise else x), self.y[i]


def _augmentation(noise: float) -> Setup:
    """Noise far larger than the features: the same 64 samples cannot be memorised read afresh each step."""
    torch.manual_seed(0)
    (x, y), _ = digits()
    loader = torch.utils.data.DataLoader(_Augmented(x, y, noise), batch_size=64, shuffle=True)
    return Setup(model=_mlp(), train_data=loader, loss_fn=nn.CrossEntropyLoss(),
                 optimizer=lambda p: torch.optim.Adam(p, lr=1e-3))


CASES = [
    Case("optimizer-maximize-true", lambda: _maximize(fixed=False), ("OFB001",),
         twin=lambda: _maximize(fixed=True), location="optimizer", select=("OFB",)),
    Case("log-likelihood-minimised-as-loss", lambda: _log_likelihood_as_loss(fixed=False), ("OFB001",),
         twin=lambda: _log_likelihood_as_loss(fixed=True), location="loss_fn", select=("OFB",)),
    Case("sgd-learning-rate-10", lambda: _digits(_learning_rate(10.0)), ("OFB002",),
         twin=lambda: _digits(_learning_rate(0.1)), location="optimizer", select=("OFB",)),
    Case("sgd-lr-1-momentum-0.99", lambda: _multilabel_dropout(_learning_rate(1.0, momentum=0.99)), ("OFB003",),
         twin=lambda: _multilabel_dropout(_learning_rate(0.1, momentum=0.9)), location="optimizer", select=("OFB",)),
    Case("learning-rate-1e-7", lambda: _digits(lambda p: torch.optim.Adam(p, lr=1e-7)), ("OFB004",),
         twin=lambda: _digits(lambda p: torch.optim.Adam(p, lr=1e-3)), location="optimizer", select=("OFB",)),
    Case("weight-decay-10", lambda: _digits(lambda p: torch.optim.Adam(p, lr=1e-3, weight_decay=10.0)), ("OFB004",),
         twin=lambda: _digits(lambda p: torch.optim.Adam(p, lr=1e-3, weight_decay=1e-4)), location="model",
         select=("OFB",)),
    Case("augmentation-noise-larger-than-signal", lambda: _augmentation(3.0), ("OFB007",),
         twin=lambda: _augmentation(0.0), location="train_data", select=("OFB",)),
]
