"""NUM: numerical instability. Each case plants the bug the way training code really has it; its twin has
the fix."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from nndoctor import Setup

from . import Case
from .data_sources import breast_cancer, digits


class LogPixels(nn.Module):
    """Log-scales the digit intensities (counts 0..16) before an MLP."""

    def __init__(self, fixed: bool) -> None:
        super().__init__()
        self.mlp = nn.Sequential(nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 10))
        self.fixed = fixed

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        counts = x * 16
        if self.fixed:
            return self.mlp(torch.log1p(counts))
        return self.mlp(torch.log(counts))  # log(0) = -inf for the blank pixels


def _log_of_zero(fixed: bool) -> Setup:
    torch.manual_seed(0)
    train, _ = digits()
    return Setup(model=LogPixels(fixed), train_data=train, loss_fn=nn.CrossEntropyLoss())


def _contrastive(fixed: bool) -> Setup:
    """An embedding trained with a contrastive loss on pairwise distances; sqrt of the zero self-distances
    has an infinite derivative."""
    torch.manual_seed(0)
    train, _ = digits()
    eps = 1e-12 if fixed else 0.0

    def contrastive_loss(emb: torch.Tensor, y: torch.Tensor, margin: float = 1.0) -> torch.Tensor:
        dist = torch.sqrt(((emb[:, None] - emb[None]) ** 2).sum(-1) + eps)  # (N, N)
        same = (y[:, None] == y[None]).float()
        return (same * dist ** 2 + (1 - same) * F.relu(margin - dist) ** 2).mean()

    model = nn.Sequential(nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 16))
    return Setup(model=model, train_data=train, loss_fn=contrastive_loss)


def _log_of_softmax(fixed: bool) -> Setup:
    """Cross-entropy written by hand from one-hot labels."""
    torch.manual_seed(0)
    train, _ = digits()

    def cross_entropy(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        one_hot = F.one_hot(y, 10).float()
        log_p = torch.log_softmax(logits, dim=1) if fixed else torch.log(torch.softmax(logits, dim=1))
        return -(one_hot * log_p).sum(1).mean()

    model = nn.Sequential(nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 10))
    return Setup(model=model, train_data=train, loss_fn=cross_entropy)


def _sigmoid_bce(fixed: bool, raw: bool = False) -> Setup:
    """``raw``: the features as they come (areas in the thousands), so the untrained sigmoid already saturates and
    BCELoss's clamp measurably destroys the gradient; standardised, the same pattern does no harm yet (info)."""
    torch.manual_seed(0)
    (x, y), _ = breast_cancer()
    if raw:
        from sklearn.datasets import load_breast_cancer

        d = load_breast_cancer()
        x, y = torch.tensor(d.data, dtype=torch.float32), torch.tensor(d.target, dtype=torch.float32)
    layers = [nn.Linear(30, 32), nn.ReLU(), nn.Linear(32, 1)]
    if fixed:
        return Setup(model=nn.Sequential(*layers), train_data=(x, y.unsqueeze(1)), loss_fn=nn.BCEWithLogitsLoss())
    return Setup(model=nn.Sequential(*layers, nn.Sigmoid()), train_data=(x, y.unsqueeze(1)), loss_fn=nn.BCELoss())


def _negative_bias_init(fixed: bool) -> Setup:
    torch.manual_seed(0)
    train, _ = digits()
    model = nn.Sequential(nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 10))

    def init_weights(m: nn.Module) -> None:
        if isinstance(m, nn.Linear):
            nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
            nn.init.constant_(m.bias, 0.0 if fixed else -2.0)

    model.apply(init_weights)
    return Setup(model=model, train_data=train, loss_fn=nn.CrossEntropyLoss())


def _tanh_huge_weights(fixed: bool) -> Setup:
    torch.manual_seed(0)
    (x, y), _ = breast_cancer()
    model = nn.Sequential(nn.Linear(30, 64), nn.Tanh(), nn.Linear(64, 64), nn.Tanh(), nn.Linear(64, 1))

    def init_weights(m: nn.Module) -> None:
        if isinstance(m, nn.Linear):
            if fixed:
                nn.init.xavier_uniform_(m.weight, gain=nn.init.calculate_gain("tanh"))
            else:
                nn.init.normal_(m.weight, mean=0.0, std=1.0)
            nn.init.zeros_(m.bias)

    model.apply(init_weights)
    return Setup(model=model, train_data=(x, y.unsqueeze(1)), loss_fn=nn.BCEWithLogitsLoss())


def _line(marker: str) -> str:
    """"num_cases.py:N" of the first line holding ``marker``: the source line a finding must name."""
    with open(__file__) as f:
        return f"num_cases.py:{next(i for i, line in enumerate(f, 1) if marker in line)}"


CASES = [
    Case("log-of-zero-in-forward", lambda: _log_of_zero(fixed=False), ("NUM001",),
         twin=lambda: _log_of_zero(fixed=True), location=_line("torch.log(counts)"), select=("NUM",)),
    Case("sqrt-of-zero-distance-in-backward", lambda: _contrastive(fixed=False), ("NUM002",),
         twin=lambda: _contrastive(fixed=True), location=_line("dist = torch.sqrt("), select=("NUM",)),
    # log(softmax) on digits does no measured harm at float32 values (info: tests/test_harm_measured.py)
    Case("sigmoid-into-bce-loss", lambda: _sigmoid_bce(fixed=False, raw=True), ("NUM003",),
         twin=lambda: _sigmoid_bce(fixed=True, raw=True), location="model.3", select=("NUM",)),
    Case("negative-bias-kills-relus", lambda: _negative_bias_init(fixed=False), ("NUM004",),
         twin=lambda: _negative_bias_init(fixed=True), location="model.1", select=("NUM",)),
    Case("huge-weights-saturate-tanh", lambda: _tanh_huge_weights(fixed=False), ("NUM005",),
         twin=lambda: _tanh_huge_weights(fixed=True), location="model.3", select=("NUM",)),
]
