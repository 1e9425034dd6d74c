"""Causes confirmed by the compare step (checks/compare_causes.py) and by DAT004 (labels), for
tests/test_compare_causes.py (not a *_cases module: test_cases does not run them). Each planted setup has a
twin that differs only by the fix; ``CAUSES`` maps a case to (cause, code that carries it, codes selected)."""
from __future__ import annotations

import torch
from torch import nn

from nndoctor import Setup

from .data_sources import breast_cancer, digits


def _mlp(inputs: int = 64, classes: int = 10) -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(inputs, 128), nn.ReLU(), nn.Linear(128, classes))


def rare_class(weighted: bool) -> Setup:
    """Breast cancer with only 10 malignant training samples (28:1): plain SGD learns the prior and predicts
    'benign' for everything; the fix weights the loss by inverse class frequency."""
    (x, y), val = breast_cancer()
    y = y.long()
    rows = torch.cat([torch.nonzero(y == 1).flatten(), torch.nonzero(y == 0).flatten()[:10]])
    x, y = x[rows], y[rows]
    counts = torch.bincount(y).float()
    weight = len(y) / (2 * counts) if weighted else None
    return Setup(model=_mlp(30, 2), train_data=(x, y), val_data=(val[0], val[1].long()),
                 loss_fn=nn.CrossEntropyLoss(weight=weight), optimizer=lambda p: torch.optim.SGD(p, lr=1e-2),
                 batch_size=32)


def tiny_batch(batch_size: int) -> Setup:
    """Per-sample SGD at lr 0.5: the gradient noise of one sample keeps the model at chance; 32 samples per
    batch train fine at the same rate."""
    train, val = digits()
    return Setup(model=_mlp(), train_data=train, val_data=val, loss_fn=nn.CrossEntropyLoss(),
                 optimizer=lambda p: torch.optim.SGD(p, lr=0.5), batch_size=batch_size)


def batchnorm_batch_2() -> Setup:
    """Batch-norm over batches of 2 learns slower (sign-like features in training), but training longer at
    batch 2 also gets there: not a batch-size bug, and nndoctor must not call it one."""
    torch.manual_seed(0)
    (x, y), val = digits()
    model = nn.Sequential(nn.Linear(64, 128), nn.BatchNorm1d(128), nn.ReLU(), nn.Linear(128, 128),
                          nn.BatchNorm1d(128), nn.ReLU(), nn.Linear(128, 10))
    return Setup(model=model, train_data=(x[:1436], y[:1436]), val_data=val, loss_fn=nn.CrossEntropyLoss(),
                 batch_size=2)


def trained_for(steps: int) -> Setup:
    """A model handed over as trained (trained=True) after ``steps`` Adam steps: 5 are far too few."""
    (x, y), val = digits()
    model = _mlp()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    g = torch.Generator().manual_seed(0)
    for _ in range(steps):
        rows = torch.randint(0, len(y), (32,), generator=g)
        opt.zero_grad()
        nn.functional.cross_entropy(model(x[rows]), y[rows]).backward()
        opt.step()
    return Setup(model=model, train_data=(x, y), val_data=val, loss_fn=nn.CrossEntropyLoss(),
                 optimizer=lambda p: torch.optim.Adam(p, lr=1e-3), batch_size=32, trained=True)


def misaligned_labels(shuffled_train: bool, shuffled_val: bool = False) -> Setup:
    """Training labels permuted separately from the inputs (a Dataset returning x[i], y[perm[i]])."""
    (x, y), (xv, yv) = digits()
    if shuffled_train:
        y = y[torch.randperm(len(y), generator=torch.Generator().manual_seed(1))]
    if shuffled_val:
        yv = yv[torch.randperm(len(yv), generator=torch.Generator().manual_seed(2))]
    return Setup(model=_mlp(), train_data=(x, y), val_data=(xv, yv), loss_fn=nn.CrossEntropyLoss(), batch_size=32)


# case -> (planted, twin, cause, the code whose finding carries it, the codes selected)
CAUSES = {
    "rare-class-learns-the-prior": (lambda: rare_class(False), lambda: rare_class(True), "class-imbalance",
                                    "CMP001", ("CMP",)),
    "per-sample-sgd-noise": (lambda: tiny_batch(1), lambda: tiny_batch(32), "batch-size", "CMP001", ("CMP",)),
    "trained-model-stopped-after-5-steps": (lambda: trained_for(5), lambda: trained_for(500), "training-length",
                                            "CMP001", ("CMP",)),
    "training-labels-shuffled": (lambda: misaligned_labels(True), lambda: misaligned_labels(False), "labels",
                                 "DAT004", ("DAT004",)),
}
