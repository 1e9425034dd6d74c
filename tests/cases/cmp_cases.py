"""CMP: the model trains but is wrong, found by comparing it with results one can trust. Each case
plants one bug the way people write it; its twin differs only by the fix."""
from __future__ import annotations

import torch
from torch import nn

from nndoctor import KnownResult, Setup

from . import Case
from .data_sources import digits, wine


def adam(lr: float = 1e-3):
    return lambda params: torch.optim.Adam(params, lr=lr)


def _shuffled_labels(bug: bool) -> Setup:
    """Inputs and labels shuffled "together" with two different permutations."""
    torch.manual_seed(0)
    (xt, yt), val = digits()
    perm = torch.randperm(len(xt))
    x, y = xt[perm], yt[torch.randperm(len(yt)) if bug else perm]
    model = nn.Sequential(nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 10))
    return Setup(model=model, train_data=(x, y), val_data=val, loss_fn=nn.CrossEntropyLoss(), optimizer=adam())


def _bottleneck(hidden: tuple[int, int]) -> Setup:
    """Hidden sizes from a config; the typo [32, 1] for [32, 16] squeezes ten classes through one unit."""
    torch.manual_seed(0)
    train, val = digits()
    h1, h2 = hidden
    model = nn.Sequential(nn.Linear(64, h1), nn.ReLU(), nn.Linear(h1, h2), nn.ReLU(), nn.Linear(h2, 10))
    return Setup(model=model, train_data=train, val_data=val, loss_fn=nn.CrossEntropyLoss(), optimizer=adam())


class MaskedMLP(nn.Module):
    """Drops the pixels that never vary; the threshold is in the wrong units, so it drops every pixel."""

    def __init__(self, x: torch.Tensor, threshold: float) -> None:
        super().__init__()
        self.register_buffer("mask", (x.std(0) > threshold).float())  # (64,)
        self.net = nn.Sequential(nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 10))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x * self.mask)


def _zero_mask(threshold: float) -> Setup:
    torch.manual_seed(0)
    (xt, yt), val = digits()
    return Setup(model=MaskedMLP(xt, threshold), train_data=(xt, yt), val_data=val, loss_fn=nn.CrossEntropyLoss(),
                 optimizer=adam())


class DropIdColumns(nn.Module):
    """The first two columns are record ids; the slice meant to drop them keeps only them."""

    def __init__(self, keep: slice, columns: int = 15) -> None:
        super().__init__()
        self.keep = keep
        self.net = nn.Sequential(nn.Linear(len(range(columns)[keep]), 32), nn.ReLU(), nn.Linear(32, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x[:, self.keep])


def _wrong_slice(keep: slice) -> Setup:
    torch.manual_seed(0)
    (xt, yt), (xv, yv) = wine()
    def with_ids(x: torch.Tensor, offset: int) -> torch.Tensor:
        ids = torch.arange(offset, offset + len(x), dtype=torch.float32).unsqueeze(1) / 100  # (N, 1)
        return torch.cat([ids, torch.ones_like(ids), x], dim=1)  # (N, 2 + 13)
    return Setup(model=DropIdColumns(keep), train_data=(with_ids(xt, 0), yt), val_data=(with_ids(xv, len(xt)), yv),
                 loss_fn=nn.CrossEntropyLoss(), optimizer=adam(), batch_size=32)


def _trained_digits_mlp(lr: float) -> Setup:
    """A model trained by the user (a learning-rate typo: 1e-5 for 1e-3), checked against an official result."""
    torch.manual_seed(0)
    (xt, yt), val = digits()
    model = nn.Sequential(nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 10))
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    for _ in range(15):
        for i in range(0, len(xt), 64):
            opt.zero_grad()
            nn.functional.cross_entropy(model(xt[i:i + 64]), yt[i:i + 64]).backward()
            opt.step()
    official = KnownResult(metric="accuracy", value=0.97, source="official-similar",
                           note="official MLP on an 80/20 split of the same digits")
    return Setup(model=model, train_data=(xt, yt), val_data=val, loss_fn=nn.CrossEntropyLoss(), trained=True,
                 known_results=[official])


class OfficialBlock(nn.Module):
    def __init__(self, dim: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.fc1 = nn.Linear(dim, 2 * dim)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(2 * dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.fc2(self.act(self.fc1(self.norm(x))))


class OfficialNet(nn.Module):
    """The reference: an official residual MLP."""

    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Linear(64, 32)
        self.blocks = nn.Sequential(OfficialBlock(32), OfficialBlock(32))
        self.head = nn.Linear(32, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.blocks(self.embed(x)))


class MyBlock(nn.Module):
    def __init__(self, dim: int, activation: type[nn.Module]) -> None:
        super().__init__()
        self.ln = nn.LayerNorm(dim)
        self.up = nn.Linear(dim, 2 * dim)
        self.nonlin = activation()
        self.down = nn.Linear(2 * dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.down(self.nonlin(self.up(self.ln(x))))


class MyNet(nn.Module):
    """A re-implementation with its own names; the second block's activation may differ from the paper's."""

    def __init__(self, second_activation: type[nn.Module]) -> None:
        super().__init__()
        self.stem = nn.Linear(64, 32)
        self.layers = nn.ModuleList([MyBlock(32, nn.GELU), MyBlock(32, second_activation)])
        self.classifier = nn.Linear(32, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        for layer in self.layers:
            x = layer(x)
        return self.classifier(x)


def _reimplementation(second_activation: type[nn.Module]) -> Setup:
    torch.manual_seed(0)
    train, _ = digits()
    return Setup(model=MyNet(second_activation), reference_model=OfficialNet(), train_data=train,
                 loss_fn=nn.CrossEntropyLoss())


CASES = [
    Case("labels-shuffled-apart-from-inputs", lambda: _shuffled_labels(bug=True), ("CMP001",),
         twin=lambda: _shuffled_labels(bug=False), location="train_data", select=("RUN", "CMP001")),
    Case("hidden-layer-too-narrow", lambda: _bottleneck((32, 1)), ("CMP001",),
         twin=lambda: _bottleneck((32, 16)), location="model.2", select=("RUN", "CMP001")),
    Case("mask-zeroes-every-input", lambda: _zero_mask(threshold=1.0), ("CMP002",),
         twin=lambda: _zero_mask(threshold=1e-3), location="model.net.0", select=("RUN", "CMP002")),
    Case("slice-keeps-the-wrong-columns", lambda: _wrong_slice(slice(0, 2)), ("CMP001",),
         twin=lambda: _wrong_slice(slice(2, None)), location="model.net.0", select=("RUN", "CMP001", "CMP002")),
    Case("below-official-result", lambda: _trained_digits_mlp(lr=1e-5), ("CMP003",),
         twin=lambda: _trained_digits_mlp(lr=1e-3), location="known_results[0]", select=("RUN", "CMP003")),
    Case("reimplementation-wrong-activation", lambda: _reimplementation(nn.ReLU), ("CMP004",),
         twin=lambda: _reimplementation(nn.GELU), location="model.layers.1.nonlin", select=("RUN", "CMP004")),
]
