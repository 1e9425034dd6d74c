"""Correct models of different kinds: nndoctor must report no error and no warning on any of them.

Grow this suite whenever a false alarm is found.
"""
from __future__ import annotations

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, TensorDataset

from nndoctor import Setup

from .data_sources import breast_cancer, diabetes, digits, token_sequences, wine


def adam(lr: float = 1e-3):
    return lambda params: torch.optim.Adam(params, lr=lr)


def mlp_digits() -> Setup:
    torch.manual_seed(0)
    train, val = digits()
    model = nn.Sequential(nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 10))
    return Setup(model=model, train_data=train, val_data=val, loss_fn=nn.CrossEntropyLoss(), optimizer=adam())


class SmallCNN(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(),
            nn.Conv2d(16, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(), nn.MaxPool2d(2),
        )
        self.head = nn.Linear(32 * 4 * 4, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x).flatten(1))  # (N, 10)


def cnn_bn_digits() -> Setup:
    torch.manual_seed(0)
    (xt, yt), (xv, yv) = digits(flat=False)
    loader = DataLoader(TensorDataset(xt, yt), batch_size=64, shuffle=True, drop_last=True)
    val = DataLoader(TensorDataset(xv, yv), batch_size=128)
    return Setup(model=SmallCNN(), train_data=loader, val_data=val, loss_fn=nn.CrossEntropyLoss(), optimizer=adam())


class LSTMClassifier(nn.Module):
    def __init__(self, vocab: int = 50, dim: int = 32, classes: int = 2) -> None:
        super().__init__()
        self.emb = nn.Embedding(vocab, dim)
        self.lstm = nn.LSTM(dim, dim, batch_first=True)
        self.out = nn.Linear(dim, classes)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        h, _ = self.lstm(self.emb(tokens))  # (N, T, D)
        return self.out(h[:, -1])  # (N, C)


def lstm_tokens() -> Setup:
    torch.manual_seed(0)
    train, val = token_sequences()
    return Setup(model=LSTMClassifier(), train_data=train, val_data=val, loss_fn=nn.CrossEntropyLoss(),
                 optimizer=adam(3e-3))


class TinyTransformer(nn.Module):
    def __init__(self, vocab: int = 50, dim: int = 32, length: int = 12, classes: int = 2) -> None:
        super().__init__()
        self.emb = nn.Embedding(vocab, dim)
        self.pos = nn.Parameter(torch.zeros(1, length, dim))
        layer = nn.TransformerEncoderLayer(dim, nhead=4, dim_feedforward=64, dropout=0.1, batch_first=True)
        self.encoder = nn.TransformerEncoder(layer, num_layers=2)
        self.norm = nn.LayerNorm(dim)
        self.out = nn.Linear(dim, classes)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        h = self.emb(tokens) + self.pos  # (N, T, D): the position embedding broadcasts over the batch
        h = self.encoder(h)
        return self.out(self.norm(h.mean(dim=1)))  # (N, C)


def transformer_tokens() -> Setup:
    torch.manual_seed(0)
    train, val = token_sequences()
    return Setup(model=TinyTransformer(), train_data=train, val_data=val, loss_fn=nn.CrossEntropyLoss(),
                 optimizer=lambda p: torch.optim.AdamW(p, lr=1e-3, weight_decay=0.01))


def regression_diabetes() -> Setup:
    torch.manual_seed(0)
    (xt, yt), (xv, yv) = diabetes()
    model = nn.Sequential(nn.Linear(10, 64), nn.ReLU(), nn.Linear(64, 1))
    return Setup(model=model, train_data=(xt, yt.unsqueeze(1)), val_data=(xv, yv.unsqueeze(1)),
                 loss_fn=nn.MSELoss(), optimizer=adam(), batch_size=32)


def binary_breast_cancer() -> Setup:
    torch.manual_seed(0)
    (xt, yt), (xv, yv) = breast_cancer()
    model = nn.Sequential(nn.Linear(30, 32), nn.Tanh(), nn.Linear(32, 1))
    return Setup(model=model, train_data=(xt, yt.unsqueeze(1)), val_data=(xv, yv.unsqueeze(1)),
                 loss_fn=nn.BCEWithLogitsLoss(), optimizer=adam(), batch_size=32)


def soft_targets_digits() -> Setup:
    """Cross-entropy with class-probability targets (label smoothing done in the data)."""
    torch.manual_seed(0)
    (xt, yt), (xv, yv) = digits()
    def smooth(y: torch.Tensor) -> torch.Tensor:
        return nn.functional.one_hot(y, 10).float() * 0.9 + 0.01
    model = nn.Sequential(nn.Linear(64, 64), nn.GELU(), nn.Linear(64, 10))
    return Setup(model=model, train_data=(xt, smooth(yt)), val_data=(xv, smooth(yv)), loss_fn=nn.CrossEntropyLoss(),
                 optimizer=adam(), task="classification",
                 metric=lambda out, y: (out.argmax(1) == y.argmax(1)).float().mean().item())


def logsoftmax_nll_wine() -> Setup:
    torch.manual_seed(0)
    train, val = wine()
    model = nn.Sequential(nn.Linear(13, 32), nn.ReLU(), nn.Linear(32, 3), nn.LogSoftmax(dim=1))
    return Setup(model=model, train_data=train, val_data=val, loss_fn=nn.NLLLoss(), optimizer=adam(), batch_size=32)


class DictDataset(Dataset):
    def __init__(self, x: torch.Tensor, y: torch.Tensor) -> None:
        self.x, self.y = x, y

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, i: int):
        return {"features": self.x[i], "scale": torch.ones(1)}, self.y[i]


class DictModel(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 10))

    def forward(self, features: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
        return self.body(features) * scale  # scale (N, 1) broadcasts over classes on purpose


def dict_inputs_digits() -> Setup:
    torch.manual_seed(0)
    (xt, yt), (xv, yv) = digits()
    return Setup(model=DictModel(), train_data=DictDataset(xt, yt), val_data=DictDataset(xv, yv),
                 loss_fn=nn.CrossEntropyLoss(), optimizer=adam(), batch_size=64)


def frozen_backbone_digits() -> Setup:
    torch.manual_seed(0)
    train, val = digits()
    backbone = nn.Sequential(nn.Linear(64, 128), nn.ReLU())
    for p in backbone.parameters():
        p.requires_grad_(False)  # deliberately frozen: GRD001 must stay silent
    model = nn.Sequential(backbone, nn.Linear(128, 10))
    return Setup(model=model, train_data=train, val_data=val, loss_fn=nn.CrossEntropyLoss(),
                 optimizer=lambda p: torch.optim.Adam([q for q in p if q.requires_grad], lr=1e-2))


class ResidualBlock(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(channels)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.relu(self.bn1(self.conv1(x)))
        return torch.relu(x + self.bn2(self.conv2(h)))


class ResNetTiny(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(1, 16, 3, padding=1, bias=False), nn.BatchNorm2d(16), nn.ReLU())
        self.blocks = nn.Sequential(ResidualBlock(16), ResidualBlock(16))
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(16, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.pool(self.blocks(self.stem(x))).flatten(1))


def residual_cnn_digits() -> Setup:
    torch.manual_seed(0)
    (xt, yt), (xv, yv) = digits(flat=False)
    loader = DataLoader(TensorDataset(xt, yt), batch_size=64, shuffle=True, drop_last=True)
    return Setup(model=ResNetTiny(), train_data=loader, val_data=(xv, yv), loss_fn=nn.CrossEntropyLoss(),
                 optimizer=lambda p: torch.optim.SGD(p, lr=0.05, momentum=0.9, weight_decay=5e-4))


class TwoInputs(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Linear(32, 32)
        self.b = nn.Linear(32, 32)
        self.head = nn.Sequential(nn.ReLU(), nn.Dropout(0.1), nn.Linear(64, 10))

    def forward(self, left: torch.Tensor, right: torch.Tensor) -> torch.Tensor:
        return self.head(torch.cat([self.a(left), self.b(right)], dim=1))


def multi_input_digits() -> Setup:
    torch.manual_seed(0)
    (xt, yt), (xv, yv) = digits()
    return Setup(model=TwoInputs(), train_data=((xt[:, :32], xt[:, 32:]), yt), val_data=((xv[:, :32], xv[:, 32:]), yv),
                 loss_fn=nn.CrossEntropyLoss(), optimizer=adam())


def multilabel_digits() -> Setup:
    """Two independent labels per image (is it even? is it >= 5?) with BCEWithLogitsLoss."""
    torch.manual_seed(0)
    (xt, yt), (xv, yv) = digits()
    def labels(y: torch.Tensor) -> torch.Tensor:
        return torch.stack([(y % 2 == 0), (y >= 5)], dim=1).float()
    model = nn.Sequential(nn.Linear(64, 64), nn.ReLU(), nn.Dropout(0.2), nn.Linear(64, 2))
    return Setup(model=model, train_data=(xt, labels(yt)), val_data=(xv, labels(yv)),
                 loss_fn=nn.BCEWithLogitsLoss(), optimizer=adam())


def dropout_decay_digits() -> Setup:
    """Dropout 0.5 and weight decay 1e-4: regularised, and it trains fine (the diagnosis must stay quiet)."""
    torch.manual_seed(0)
    train, val = digits()
    model = nn.Sequential(nn.Linear(64, 128), nn.ReLU(), nn.Dropout(0.5), nn.Linear(128, 10))
    return Setup(model=model, train_data=train, val_data=val, loss_fn=nn.CrossEntropyLoss(),
                 optimizer=lambda p: torch.optim.Adam(p, lr=1e-3, weight_decay=1e-4))


def sgd_momentum_wine() -> Setup:
    torch.manual_seed(0)
    train, val = wine()
    model = nn.Sequential(nn.Linear(13, 64), nn.ReLU(), nn.Linear(64, 3))
    return Setup(model=model, train_data=train, val_data=val, loss_fn=nn.CrossEntropyLoss(),
                 optimizer=lambda p: torch.optim.SGD(p, lr=0.05, momentum=0.9), batch_size=32)


class BagOfTokens(nn.Module):
    def __init__(self, vocab: int = 50, dim: int = 32, classes: int = 2) -> None:
        super().__init__()
        self.bag = nn.EmbeddingBag(vocab, dim, mode="sum")
        self.out = nn.Linear(dim, classes)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.out(self.bag(tokens))


def embedding_bag_tokens() -> Setup:
    torch.manual_seed(0)
    train, val = token_sequences()
    return Setup(model=BagOfTokens(), train_data=train, val_data=val, loss_fn=nn.CrossEntropyLoss(),
                 optimizer=adam(1e-2))


CLEAN = {
    f.__name__: f
    for f in [
        mlp_digits, cnn_bn_digits, lstm_tokens, transformer_tokens, regression_diabetes, binary_breast_cancer,
        soft_targets_digits, logsoftmax_nll_wine, dict_inputs_digits, frozen_backbone_digits,
        residual_cnn_digits, multi_input_digits, multilabel_digits,
        dropout_decay_digits, sgd_momentum_wine, embedding_bag_tokens,
    ]
}
