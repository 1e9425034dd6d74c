"""RUN: the model does not run one training step. Each case plants one crash; its twin has the fix."""
from __future__ import annotations

import torch
from torch import nn

from nndoctor import Setup

from . import Case
from .data_sources import diabetes, digits


def _digits_mlp(in_features: int = 64) -> Setup:
    torch.manual_seed(0)
    train, _ = digits()
    model = nn.Sequential(nn.Linear(64, 32), nn.ReLU(), nn.Linear(in_features, 10))
    return Setup(model=model, train_data=train, loss_fn=nn.CrossEntropyLoss())


class ConvNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.fc = nn.Linear(8 * 8 * 8, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.relu(self.conv(x)).flatten(1))


def _images(channels_last: bool) -> Setup:
    torch.manual_seed(0)
    (x, y), _ = digits(flat=False)
    rgb = x.repeat(1, 3, 1, 1)[:256]  # (N, 3, 8, 8)
    if channels_last:
        rgb = rgb.permute(0, 2, 3, 1).contiguous()  # (N, 8, 8, 3): as images load from disk
    return Setup(model=ConvNet(), train_data=(rgb, y[:256]), loss_fn=nn.CrossEntropyLoss())


def _float64_inputs(fixed: bool) -> Setup:
    torch.manual_seed(0)
    from sklearn.datasets import load_digits

    d = load_digits()
    x = torch.from_numpy(d.data / 16.0)  # numpy float64 -> torch.float64
    if fixed:
        x = x.float()
    model = nn.Sequential(nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 10))
    return Setup(model=model, train_data=(x, torch.from_numpy(d.target)), loss_fn=nn.CrossEntropyLoss())


def _int_regression_targets(fixed: bool) -> Setup:
    torch.manual_seed(0)
    (x, y), _ = diabetes()
    y_int = (y * 10).round().long().unsqueeze(1)  # integer targets, e.g. counts read as int
    model = nn.Sequential(nn.Linear(10, 16), nn.ReLU(), nn.Linear(16, 1))
    return Setup(model=model, train_data=(x, y_int.float() if fixed else y_int), loss_fn=nn.MSELoss())


class InplaceNet(nn.Module):
    def __init__(self, inplace: bool) -> None:
        super().__init__()
        self.fc = nn.Linear(64, 32)
        self.out = nn.Linear(32, 10)
        self.inplace = inplace

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.sigmoid(self.fc(x))
        if self.inplace:
            h += 1.0  # modifies sigmoid's output, which sigmoid's backward needs
        else:
            h = h + 1.0
        return self.out(h)


def _inplace(inplace: bool) -> Setup:
    torch.manual_seed(0)
    train, _ = digits()
    return Setup(model=InplaceNet(inplace), train_data=train, loss_fn=nn.CrossEntropyLoss())


class MetaPart(nn.Module):
    """Half the model left on another device (the meta device stands in for a GPU on CPU-only machines)."""

    def __init__(self, stray: bool) -> None:
        super().__init__()
        self.body = nn.Linear(64, 32)
        self.head = nn.Linear(32, 10, device="meta" if stray else None)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(torch.relu(self.body(x)))


def _device(stray: bool) -> Setup:
    torch.manual_seed(0)
    train, _ = digits()
    return Setup(model=MetaPart(stray), train_data=train, loss_fn=nn.CrossEntropyLoss())


CASES = [
    Case("linear-wrong-in-features", lambda: _digits_mlp(in_features=16), ("RUN001",),
         twin=lambda: _digits_mlp(in_features=32), location="model.2", select=("RUN",)),
    Case("nhwc-images-into-conv", lambda: _images(channels_last=True), ("RUN001",),
         twin=lambda: _images(channels_last=False), location="model.conv", select=("RUN",)),
    Case("float64-inputs", lambda: _float64_inputs(fixed=False), ("RUN002",),
         twin=lambda: _float64_inputs(fixed=True), location="model.0", select=("RUN",)),
    Case("integer-regression-targets", lambda: _int_regression_targets(fixed=False), ("RUN002",),
         twin=lambda: _int_regression_targets(fixed=True), location="loss_fn", select=("RUN",)),
    Case("module-on-another-device", lambda: _device(stray=True), ("RUN003",),
         twin=lambda: _device(stray=False), location="model.head", select=("RUN",)),
    Case("inplace-op-breaks-autograd", lambda: _inplace(inplace=True), ("RUN005",),
         twin=lambda: _inplace(inplace=False), location="run_cases.py", select=("RUN",)),
]
