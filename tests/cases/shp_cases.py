"""SHP: shapes that do not crash. Each case plants a silent broadcast or a batch mixing; its twin has the fix."""
from __future__ import annotations

import torch
from torch import nn

from nndoctor import Setup

from . import Case
from .data_sources import diabetes, digits


def _regression_mlp() -> nn.Module:
    return nn.Sequential(nn.Linear(10, 32), nn.ReLU(), nn.Linear(32, 1))  # (N, 1)


def _hand_written_mse(fixed: bool) -> Setup:
    torch.manual_seed(0)
    (x, y), (xv, yv) = diabetes()  # y: (N,)

    def mse(pred, target):
        if fixed:
            pred = pred.squeeze(1)
        return ((pred - target) ** 2).mean()  # bug: (N, 1) - (N,) -> (N, N)

    return Setup(model=_regression_mlp(), train_data=(x, y), val_data=(xv, yv), loss_fn=mse, batch_size=32)


def _mse_loss_module(fixed: bool) -> Setup:
    torch.manual_seed(0)
    (x, y), _ = diabetes()
    targets = y.unsqueeze(1) if fixed else y  # nn.MSELoss only warns about (N, 1) vs (N,)
    return Setup(model=_regression_mlp(), train_data=(x, targets), loss_fn=nn.MSELoss(), batch_size=32)


class BaselinePlusCorrection(nn.Module):
    """Predicts a correction on top of a baseline that is one of the input features."""

    def __init__(self, fixed: bool) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(10, 32), nn.ReLU(), nn.Linear(32, 1))
        self.fixed = fixed

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        baseline = x[:, :1] if self.fixed else x[:, 0]  # bug: (N,) instead of (N, 1)
        return self.net(x) + baseline  # (N, 1)


def _forward_broadcast(fixed: bool) -> Setup:
    torch.manual_seed(0)
    (x, y), _ = diabetes()
    return Setup(model=BaselinePlusCorrection(fixed), train_data=(x, y.unsqueeze(1)), loss_fn=nn.MSELoss(),
                 batch_size=32)


class RowLSTM(nn.Module):
    """Reads an 8x8 digit row by row with a time-major LSTM."""

    def __init__(self, fixed: bool) -> None:
        super().__init__()
        self.lstm = nn.LSTM(8, 32)  # expects (T, N, 8)
        self.out = nn.Linear(32, 10)
        self.fixed = fixed

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n = x.shape[0]
        if self.fixed:
            rows = x.view(n, 8, 8).transpose(0, 1)  # (T, N, 8)
        else:
            rows = x.view(8, n, 8)  # bug: reinterprets memory, mixing samples
        h, _ = self.lstm(rows)  # (T, N, 32)
        return self.out(h[-1])  # (N, 10)


def _view_for_transpose(fixed: bool) -> Setup:
    torch.manual_seed(0)
    train, val = digits()
    return Setup(model=RowLSTM(fixed), train_data=train, val_data=val, loss_fn=nn.CrossEntropyLoss())


def _log_softmax_over_batch(fixed: bool) -> Setup:
    torch.manual_seed(0)
    train, val = digits()
    model = nn.Sequential(nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 10), nn.LogSoftmax(dim=1 if fixed else 0))
    return Setup(model=model, train_data=train, val_data=val, loss_fn=nn.NLLLoss())


CASES = [
    Case("hand-written-mse-broadcasts", lambda: _hand_written_mse(fixed=False), ("SHP001",),
         twin=lambda: _hand_written_mse(fixed=True), location="loss_fn (", select=("SHP001",)),
    Case("mse-loss-target-shape", lambda: _mse_loss_module(fixed=False), ("SHP001",),
         twin=lambda: _mse_loss_module(fixed=True), location="loss_fn", select=("SHP001",)),
    Case("forward-adds-flat-feature", lambda: _forward_broadcast(fixed=False), ("SHP001",),
         twin=lambda: _forward_broadcast(fixed=True), location="shp_cases.py", select=("SHP001",)),
    Case("view-instead-of-transpose", lambda: _view_for_transpose(fixed=False), ("SHP002",),
         twin=lambda: _view_for_transpose(fixed=True), location="model", select=("SHP002",)),
    Case("log-softmax-over-batch", lambda: _log_softmax_over_batch(fixed=False), ("SHP002",),
         twin=lambda: _log_softmax_over_batch(fixed=True), location="model.3", select=("SHP002",)),
]
