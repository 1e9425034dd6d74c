"""Hypothesis strategies for random small models and data: MLP, CNN, RNN and attention blocks with
random activations, normalisation layers, dtypes and odd shapes. Used by tests/test_fuzz.py."""
from __future__ import annotations

from dataclasses import dataclass

import torch
from hypothesis import strategies as st
from torch import nn

import nndoctor

ACTIVATIONS = [nn.ReLU, nn.GELU, nn.Tanh, nn.Sigmoid, nn.LeakyReLU, nn.ELU, nn.SiLU, nn.Identity]


@dataclass
class Spec:
    kind: str
    width: int
    depth: int
    act: int
    norm: str
    dropout: float
    n: int
    classes: int
    task: str
    dtype: str
    lr: float
    seed: int


class RNNNet(nn.Module):
    def __init__(self, d_in: int, width: int, out: int, cell: str) -> None:
        super().__init__()
        self.rnn = {"lstm": nn.LSTM, "gru": nn.GRU, "rnn": nn.RNN}[cell](d_in, width, batch_first=True)
        self.out = nn.Linear(width, out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, _ = self.rnn(x)  # (N, T, W)
        return self.out(h[:, -1])


class AttnNet(nn.Module):
    def __init__(self, d_in: int, width: int, out: int) -> None:
        super().__init__()
        self.proj = nn.Linear(d_in, width)
        self.attn = nn.MultiheadAttention(width, num_heads=2 if width % 2 == 0 else 1, batch_first=True)
        self.norm = nn.LayerNorm(width)
        self.out = nn.Linear(width, out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.proj(x)
        a, _ = self.attn(h, h, h)
        return self.out(self.norm(h + a).mean(1))


def build(spec: Spec):
    """A Setup for ``spec``: model, data of matching shape, a loss that fits the task."""
    g = torch.Generator().manual_seed(spec.seed)
    torch.manual_seed(spec.seed)
    out = {"classification": spec.classes, "binary": 1, "regression": 1}[spec.task]
    act = ACTIVATIONS[spec.act]
    if spec.kind == "mlp":
        x = torch.randn(spec.n, 7, generator=g)
        layers: list[nn.Module] = []
        d = 7
        for _ in range(spec.depth):
            layers += [nn.Linear(d, spec.width)]
            if spec.norm == "batch":
                layers.append(nn.BatchNorm1d(spec.width))
            elif spec.norm == "layer":
                layers.append(nn.LayerNorm(spec.width))
            layers += [act(), nn.Dropout(spec.dropout)]
            d = spec.width
        model = nn.Sequential(*layers, nn.Linear(d, out))
    elif spec.kind == "cnn":
        x = torch.randn(spec.n, 2, 9, 7, generator=g)  # odd spatial sizes
        norm = {"batch": nn.BatchNorm2d(spec.width), "layer": nn.GroupNorm(1, spec.width)}.get(spec.norm, nn.Identity())
        model = nn.Sequential(nn.Conv2d(2, spec.width, 3, padding=1), norm, act(), nn.AdaptiveAvgPool2d(2),
                              nn.Flatten(), nn.Linear(spec.width * 4, out))
    elif spec.kind in ("lstm", "gru", "rnn"):
        x = torch.randn(spec.n, 5, 3, generator=g)
        model = RNNNet(3, spec.width, out, spec.kind)
    else:
        x = torch.randn(spec.n, 6, 5, generator=g)
        model = AttnNet(5, spec.width, out)
    signal = x.flatten(1)[:, 0].contiguous()
    if spec.task == "classification":
        y = torch.bucketize(signal, torch.linspace(-1, 1, spec.classes - 1))
        loss = nn.CrossEntropyLoss()
    elif spec.task == "binary":
        y = (signal > 0).float().unsqueeze(1)
        loss = nn.BCEWithLogitsLoss()
    else:
        y = signal.unsqueeze(1) * 2 + 0.1 * torch.randn(spec.n, 1, generator=g)
        loss = nn.MSELoss()
    if spec.dtype == "float64":
        model = model.double()
        x = x.double()
        if y.is_floating_point():
            y = y.double()
    return nndoctor.Setup(model=model, train_data=(x, y), loss_fn=loss, batch_size=32,
                          optimizer=lambda p: torch.optim.Adam(p, lr=spec.lr))


specs = st.builds(
    Spec,
    kind=st.sampled_from(["mlp", "cnn", "lstm", "gru", "rnn", "attn"]),
    width=st.integers(2, 24),
    depth=st.integers(1, 4),
    act=st.integers(0, len(ACTIVATIONS) - 1),
    norm=st.sampled_from(["none", "batch", "layer"]),
    dropout=st.sampled_from([0.0, 0.1, 0.5]),
    n=st.integers(8, 96),
    classes=st.integers(2, 6),
    task=st.sampled_from(["classification", "binary", "regression"]),
    dtype=st.sampled_from(["float32", "float32", "float64"]),
    lr=st.sampled_from([1e-4, 1e-3, 1e-2, 1.0]),
    seed=st.integers(0, 10_000),
)
