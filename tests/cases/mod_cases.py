"""MOD: train/eval mode misuse. Each case plants the bug the way training code really has it; its twin
has the fix."""
from __future__ import annotations

import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from nndoctor import Setup

from . import Case
from .data_sources import diabetes, digits


def _mlp() -> nn.Module:
    return nn.Sequential(nn.Linear(64, 128), nn.BatchNorm1d(128), nn.ReLU(), nn.Dropout(0.3), nn.Linear(128, 10))


def _eval_left_on(fixed: bool) -> Setup:
    """The untrained model is tried on a few samples in eval mode first, and training starts from there."""
    torch.manual_seed(0)
    (x, y), (xv, yv) = digits()
    model = _mlp()
    model.eval()
    with torch.no_grad():
        model(xv[:16]).argmax(1)  # a quick look at the untrained model's predictions
    if fixed:
        model.train()
    return Setup(model=model, train_data=(x, y), val_data=(xv, yv), loss_fn=nn.CrossEntropyLoss())


class Classifier(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.encoder = nn.Sequential(nn.Linear(64, 128), nn.BatchNorm1d(128), nn.ReLU(), nn.Dropout(0.2))
        self.head = nn.Linear(128, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.encoder(x))


def _encoder_in_eval(frozen: bool) -> Setup:
    """The encoder is put in eval mode to keep its batch-norm statistics; the twin also freezes its
    weights, which makes eval mode deliberate (a frozen feature extractor)."""
    torch.manual_seed(0)
    train, _ = digits()
    model = Classifier()
    model.encoder.eval()
    if frozen:
        model.encoder.requires_grad_(False)
    return Setup(model=model, train_data=train, loss_fn=nn.CrossEntropyLoss(),
                 optimizer=lambda params: torch.optim.Adam([p for p in params if p.requires_grad], lr=1e-3))


def _last_batch_of_one(fixed: bool) -> Setup:
    """353 training samples in batches of 32: the last batch of every epoch has one sample."""
    torch.manual_seed(0)
    (x, y), _ = diabetes()
    loader = DataLoader(TensorDataset(x, y.unsqueeze(1)), batch_size=32, shuffle=True, drop_last=fixed)
    model = nn.Sequential(nn.Linear(10, 64), nn.BatchNorm1d(64), nn.ReLU(), nn.Linear(64, 1))
    return Setup(model=model, train_data=loader, loss_fn=nn.MSELoss())


CASES = [
    Case("eval-mode-left-on", lambda: _eval_left_on(fixed=False), ("MOD001",),
         twin=lambda: _eval_left_on(fixed=True), location="model", select=("MOD",)),
    Case("submodule-left-in-eval", lambda: _encoder_in_eval(frozen=False), ("MOD001",),
         twin=lambda: _encoder_in_eval(frozen=True), location="model.encoder", select=("MOD",)),
    Case("batchnorm-last-batch-of-one", lambda: _last_batch_of_one(fixed=False), ("MOD003",),
         twin=lambda: _last_batch_of_one(fixed=True), location="model.1", select=("MOD",)),
]
