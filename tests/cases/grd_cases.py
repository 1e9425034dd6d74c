"""GRD: gradient flow. Each case plants a cut, frozen, exploding or vanishing gradient; its twin has the fix."""
from __future__ import annotations

import torch
from torch import nn

from nndoctor import Setup

from . import Case
from .data_sources import digits


class EncoderHead(nn.Module):
    def __init__(self, detach: bool) -> None:
        super().__init__()
        self.encoder = nn.Sequential(nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 32), nn.ReLU())
        self.head = nn.Linear(32, 10)
        self.detach = detach

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = self.encoder(x)  # (N, 32)
        if self.detach:
            features = features.detach()  # bug: meant to log the features, cut the encoder's gradients
        return self.head(features)


def _detached_encoder(detach: bool) -> Setup:
    torch.manual_seed(0)
    train, _ = digits()
    return Setup(model=EncoderHead(detach), train_data=train, loss_fn=nn.CrossEntropyLoss())


def _mlp() -> nn.Module:
    return nn.Sequential(nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 10))


def _optimizer_for_another_model(fixed: bool) -> Setup:
    torch.manual_seed(0)
    train, _ = digits()
    model = _mlp()
    other = _mlp()  # e.g. the model was re-created after the optimizer was built
    optimizer = torch.optim.Adam((model if fixed else other).parameters(), lr=1e-3)
    return Setup(model=model, train_data=train, loss_fn=nn.CrossEntropyLoss(), optimizer=optimizer)


def _deep_stack(activation: type[nn.Module]) -> Setup:
    torch.manual_seed(0)
    train, _ = digits()
    layers: list[nn.Module] = [nn.Linear(64, 64), activation()]
    for _ in range(9):
        layers += [nn.Linear(64, 64), activation()]
    model = nn.Sequential(*layers, nn.Linear(64, 10))
    return Setup(model=model, train_data=train, loss_fn=nn.CrossEntropyLoss(),
                 optimizer=lambda p: torch.optim.SGD(p, lr=0.1))


def _sgd(lr: float) -> Setup:
    torch.manual_seed(0)
    train, _ = digits()
    return Setup(model=_mlp(), train_data=train, loss_fn=nn.CrossEntropyLoss(),
                 optimizer=lambda p: torch.optim.SGD(p, lr=lr))


CASES = [
    Case("detached-encoder", lambda: _detached_encoder(detach=True), ("GRD001",),
         twin=lambda: _detached_encoder(detach=False), location="model.encoder", select=("GRD",)),
    Case("optimizer-built-for-another-model", lambda: _optimizer_for_another_model(fixed=False), ("GRD002",),
         twin=lambda: _optimizer_for_another_model(fixed=True), location="optimizer", select=("GRD",)),
    Case("sgd-learning-rate-10-gradients", lambda: _sgd(10.0), ("GRD003",), twin=lambda: _sgd(0.1),
         location="model.", select=("GRD",)),
    Case("deep-sigmoid-stack", lambda: _deep_stack(nn.Sigmoid), ("GRD004",), twin=lambda: _deep_stack(nn.ReLU),
         location="model.0", select=("GRD",)),
]
