"""DAT: badly pre-processed data. Each case plants one data bug the way real pipelines do; its twin has the fix."""
from __future__ import annotations

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from nndoctor import Setup

from . import Case
from .data_sources import digits, token_sequences


def _mlp(inputs: int, outputs: int, first: nn.Module | None = None) -> nn.Module:
    layers = [first] if first is not None else []
    return nn.Sequential(*layers, nn.Linear(inputs, 64), nn.ReLU(), nn.Linear(64, outputs))


def _split(x: np.ndarray, y: np.ndarray, seed: int = 0):
    rng = np.random.default_rng(seed)
    perm = rng.permutation(len(y))
    cut = int(0.8 * len(y))
    return (x[perm[:cut]], y[perm[:cut]]), (x[perm[cut:]], y[perm[cut:]])


def _raw_pixels(fixed: bool) -> Setup:
    """Digits as 0-255 grey levels, the way images come from disk."""
    from sklearn.datasets import load_digits

    torch.manual_seed(0)
    d = load_digits()
    pixels = np.round(d.data * 255 / 16).astype(np.float32)  # 0..255
    if fixed:
        pixels = pixels / 255.0
    (xt, yt), (xv, yv) = _split(pixels, d.target)
    return Setup(model=_mlp(64, 10), train_data=(torch.from_numpy(xt), torch.from_numpy(yt)),
                 val_data=(torch.from_numpy(xv), torch.from_numpy(yv)), loss_fn=nn.CrossEntropyLoss())


def _unscaled_tabular(fixed: bool) -> Setup:
    """Breast-cancer measurements as read from the CSV (areas ~1000, smoothness ~0.1); the fix normalises
    inside the model."""
    from sklearn.datasets import load_breast_cancer

    torch.manual_seed(0)
    d = load_breast_cancer()
    (xt, yt), (xv, yv) = _split(d.data.astype(np.float32), d.target.astype(np.float32))
    model = _mlp(30, 1, first=nn.BatchNorm1d(30) if fixed else None)
    return Setup(model=model, train_data=(torch.from_numpy(xt), torch.from_numpy(yt).unsqueeze(1)),
                 val_data=(torch.from_numpy(xv), torch.from_numpy(yv).unsqueeze(1)), loss_fn=nn.BCEWithLogitsLoss())


def _missing_values(fixed: bool) -> Setup:
    """Some measurements missing (NaN in the CSV); the fix imputes them with the training median."""
    from sklearn.datasets import load_wine
    from sklearn.impute import SimpleImputer
    from sklearn.preprocessing import StandardScaler

    torch.manual_seed(0)
    d = load_wine()
    x = d.data.copy()
    rng = np.random.default_rng(1)
    x[rng.choice(len(x), 12, replace=False), 9] = np.nan  # colour intensity not recorded for 12 wines
    (xt, yt), (xv, yv) = _split(x, d.target)
    if fixed:
        imputer = SimpleImputer(strategy="median").fit(xt)
        xt, xv = imputer.transform(xt), imputer.transform(xv)
    scaler = StandardScaler().fit(xt)  # NaN-aware: NaNs pass through
    xt, xv = scaler.transform(xt).astype(np.float32), scaler.transform(xv).astype(np.float32)
    return Setup(model=_mlp(13, 3), train_data=(torch.from_numpy(xt), torch.from_numpy(yt)),
                 val_data=(torch.from_numpy(xv), torch.from_numpy(yv)), loss_fn=nn.CrossEntropyLoss(), batch_size=32)


def _one_based_labels(fixed: bool) -> Setup:
    """Wine classes as in the UCI file, 1, 2, 3, into a 3-output classifier."""
    torch.manual_seed(0)
    (xt, yt), (xv, yv) = _wine_standardised()
    yt, yv = yt + 1, yv + 1  # the file's labels
    if fixed:
        yt, yv = yt - 1, yv - 1
    return Setup(model=_mlp(13, 3), train_data=(xt, yt), val_data=(xv, yv), loss_fn=nn.CrossEntropyLoss(),
                 batch_size=32)


def _wine_standardised():
    from sklearn.datasets import load_wine

    d = load_wine()
    x = (d.data - d.data.mean(0)) / d.data.std(0)
    (xt, yt), (xv, yv) = _split(x.astype(np.float32), d.target)
    return (torch.from_numpy(xt), torch.from_numpy(yt)), (torch.from_numpy(xv), torch.from_numpy(yv))


def _plus_minus_one_labels(fixed: bool) -> Setup:
    """Benign/malignant coded as -1/+1 (as for an SVM) into BCEWithLogitsLoss."""
    from sklearn.datasets import load_breast_cancer

    torch.manual_seed(0)
    d = load_breast_cancer()
    x = ((d.data - d.data.mean(0)) / d.data.std(0)).astype(np.float32)
    y = (2.0 * d.target - 1.0).astype(np.float32)  # -1 / +1
    if fixed:
        y = (y + 1) / 2
    (xt, yt), (xv, yv) = _split(x, y)
    return Setup(model=_mlp(30, 1), train_data=(torch.from_numpy(xt), torch.from_numpy(yt).unsqueeze(1)),
                 val_data=(torch.from_numpy(xv), torch.from_numpy(yv).unsqueeze(1)), loss_fn=nn.BCEWithLogitsLoss())


class Tagger(nn.Module):
    def __init__(self, vocab: int = 50, tags: int = 3) -> None:
        super().__init__()
        self.emb = nn.Embedding(vocab, 16, padding_idx=0)
        self.out = nn.Linear(16, tags)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.out(self.emb(tokens)).permute(0, 2, 1)  # (N, tags, T), as CrossEntropyLoss wants


def _padding_label(fixed: bool) -> Setup:
    """Per-token tags padded with -1 to a common length; the loss is not told to ignore them."""
    torch.manual_seed(0)
    (ids, _), _ = token_sequences()
    tags = torch.where(ids <= 2, ids, 0)  # tag 1/2 for tokens 1/2, 0 otherwise
    lengths = torch.randint(6, ids.shape[1] + 1, (len(ids),))
    padded = torch.arange(ids.shape[1]) >= lengths[:, None]  # (N, T)
    ids, tags = ids.masked_fill(padded, 0), tags.masked_fill(padded, -1)
    loss = nn.CrossEntropyLoss(ignore_index=-1) if fixed else nn.CrossEntropyLoss()
    return Setup(model=Tagger(), train_data=(ids, tags), loss_fn=loss)


def _shuffled_labels(fixed: bool) -> Setup:
    """Inputs and labels shuffled with two different permutations."""
    torch.manual_seed(0)
    (x, y), (xv, yv) = digits()
    perm = torch.randperm(len(y))
    x = x[perm]
    y = y[perm] if fixed else y[torch.randperm(len(y))]  # bug: a second permutation for the labels
    return Setup(model=_mlp(64, 10), train_data=(x, y), val_data=(xv, yv), loss_fn=nn.CrossEntropyLoss())


def _val_not_normalised(fixed: bool) -> Setup:
    """The scaler is fitted and applied to train; the validation features stay raw."""
    from sklearn.datasets import load_breast_cancer
    from sklearn.preprocessing import StandardScaler

    torch.manual_seed(0)
    d = load_breast_cancer()
    (xt, yt), (xv, yv) = _split(d.data, d.target)
    scaler = StandardScaler().fit(xt)
    xt = scaler.transform(xt)
    if fixed:
        xv = scaler.transform(xv)
    t = lambda a: torch.tensor(a, dtype=torch.float32)  # noqa: E731
    return Setup(model=_mlp(30, 1), train_data=(t(xt), t(yt).unsqueeze(1)), val_data=(t(xv), t(yv).unsqueeze(1)),
                 loss_fn=nn.BCEWithLogitsLoss())


def _sorted_by_class(fixed: bool) -> Setup:
    """Samples stored class by class (as when reading one folder per class), loaded without shuffling."""
    torch.manual_seed(0)
    (x, y), (xv, yv) = digits()
    order = torch.argsort(y, stable=True)
    loader = DataLoader(TensorDataset(x[order], y[order]), batch_size=64, shuffle=fixed)
    return Setup(model=_mlp(64, 10), train_data=loader, val_data=(xv, yv), loss_fn=nn.CrossEntropyLoss())


def _val_inside_train(fixed: bool) -> Setup:
    """Validation taken from the start of the data, while training uses all of it."""
    from sklearn.datasets import load_digits

    torch.manual_seed(0)
    d = load_digits()
    x = torch.tensor(d.data, dtype=torch.float32) / 16
    y = torch.tensor(d.target)
    xv, yv = x[:360], y[:360]
    xt, yt = (x[360:], y[360:]) if fixed else (x, y)  # bug: train still holds the validation rows
    return Setup(model=_mlp(64, 10), train_data=(xt, yt), val_data=(xv, yv), loss_fn=nn.CrossEntropyLoss())


def _rare_positives(fixed: bool) -> Setup:
    """A 'is it a zero?' detector: about one positive per nine negatives; the fix weights the positives."""
    torch.manual_seed(0)
    (x, y), (xv, yv) = digits()
    yt, yv = (y == 0).float().unsqueeze(1), (yv == 0).float().unsqueeze(1)
    loss = nn.BCEWithLogitsLoss(pos_weight=torch.tensor([9.0])) if fixed else nn.BCEWithLogitsLoss()
    return Setup(model=_mlp(64, 1), train_data=(x, yt), val_data=(xv, yv), loss_fn=loss)


CASES = [
    Case("raw-0-255-pixels", lambda: _raw_pixels(fixed=False), ("DAT001",),
         twin=lambda: _raw_pixels(fixed=True), location="train_data", select=("DAT001",)),
    Case("unscaled-tabular-features", lambda: _unscaled_tabular(fixed=False), ("DAT001",),
         twin=lambda: _unscaled_tabular(fixed=True), location="train_data", select=("DAT001",)),
    Case("missing-values-as-nan", lambda: _missing_values(fixed=False), ("DAT002",),
         twin=lambda: _missing_values(fixed=True), location="train_data", select=("DAT002",)),
    Case("one-based-labels", lambda: _one_based_labels(fixed=False), ("DAT003",),
         twin=lambda: _one_based_labels(fixed=True), location="train_data targets", select=("RUN", "DAT003")),
    Case("padding-label-without-ignore-index", lambda: _padding_label(fixed=False), ("DAT003",),
         twin=lambda: _padding_label(fixed=True), location="train_data targets", select=("RUN", "DAT003")),
    Case("plus-minus-one-bce-labels", lambda: _plus_minus_one_labels(fixed=False), ("DAT003",),
         twin=lambda: _plus_minus_one_labels(fixed=True), location="targets", select=("DAT003",)),
    Case("labels-shuffled-apart", lambda: _shuffled_labels(fixed=False), ("DAT004",),
         twin=lambda: _shuffled_labels(fixed=True), location="train_data", select=("DAT004",)),
    Case("val-not-normalised", lambda: _val_not_normalised(fixed=False), ("DAT005",),
         twin=lambda: _val_not_normalised(fixed=True), location="val_data", select=("DAT005",)),
    Case("batches-sorted-by-class", lambda: _sorted_by_class(fixed=False), ("DAT006",),
         twin=lambda: _sorted_by_class(fixed=True), location="train_data", select=("DAT006",)),
    Case("val-rows-inside-train", lambda: _val_inside_train(fixed=False), ("DAT007",),
         twin=lambda: _val_inside_train(fixed=True), location="val_data", select=("DAT007",)),
    Case("rare-positive-class", lambda: _rare_positives(fixed=False), ("DAT008",),
         twin=lambda: _rare_positives(fixed=True), location="train_data", select=("DAT008",)),
]
