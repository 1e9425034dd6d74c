"""LOS: wrong input to the loss. Each case plants the bug the way training code really has it; its twin
has the fix."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from nndoctor import Setup

from . import Case
from .data_sources import breast_cancer, diabetes, digits, wine


class DigitsCNN(nn.Module):
    def __init__(self, softmax_head: bool) -> None:
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2))
        head = [nn.Flatten(), nn.Linear(16 * 4 * 4, 10)]
        self.head = nn.Sequential(*head, nn.Softmax(dim=1)) if softmax_head else nn.Sequential(*head)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))  # (N, 10)


def _softmax_head(fixed: bool) -> Setup:
    torch.manual_seed(0)
    train, _ = digits(flat=False)
    return Setup(model=DigitsCNN(softmax_head=not fixed), train_data=train, loss_fn=nn.CrossEntropyLoss())


class ProbabilityMLP(nn.Module):
    """Returns class probabilities, the way a model meant for inference does."""

    def __init__(self, probabilities: bool) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 10))
        self.probabilities = probabilities

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits = self.body(x)
        if self.probabilities:
            return F.softmax(logits, dim=1)
        return logits


def _functional_softmax(fixed: bool) -> Setup:
    torch.manual_seed(0)
    train, _ = digits()
    return Setup(model=ProbabilityMLP(probabilities=not fixed), train_data=train,
                 loss_fn=lambda out, y: F.cross_entropy(out, y))


def _sigmoid_into_bce_with_logits(fixed: bool) -> Setup:
    torch.manual_seed(0)
    (x, y), _ = breast_cancer()
    layers = [nn.Linear(30, 32), nn.ReLU(), nn.Linear(32, 1)]
    model = nn.Sequential(*layers) if fixed else nn.Sequential(*layers, nn.Sigmoid())
    return Setup(model=model, train_data=(x, y.unsqueeze(1)), loss_fn=nn.BCEWithLogitsLoss())


def _nll_on_logits(fixed: bool) -> Setup:
    torch.manual_seed(0)
    train, _ = wine()
    layers = [nn.Linear(13, 32), nn.ReLU(), nn.Linear(32, 3)]
    model = nn.Sequential(*layers, nn.LogSoftmax(dim=1)) if fixed else nn.Sequential(*layers)
    return Setup(model=model, train_data=train, loss_fn=nn.NLLLoss())


def _kl_on_probabilities(fixed: bool) -> Setup:
    """Distillation-style training on soft labels with KLDivLoss, whose input must be log-probabilities."""
    torch.manual_seed(0)
    (x, y), _ = digits()
    soft = F.one_hot(y, 10).float() * 0.8 + 0.02  # a teacher's softened labels
    kl = nn.KLDivLoss(reduction="batchmean")

    def loss_fn(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        student = F.log_softmax(logits, dim=1) if fixed else F.softmax(logits, dim=1)
        return kl(student, target)

    model = nn.Sequential(nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 10))
    return Setup(model=model, train_data=(x, soft), loss_fn=loss_fn, task="classification")


def _sigmoid_regression(fixed: bool) -> Setup:
    """Standardised regression targets (half of them negative) behind a sigmoid output."""
    torch.manual_seed(0)
    (x, y), _ = diabetes()
    layers = [nn.Linear(10, 32), nn.ReLU(), nn.Linear(32, 1)]
    model = nn.Sequential(*layers) if fixed else nn.Sequential(*layers, nn.Sigmoid())
    return Setup(model=model, train_data=(x, y.unsqueeze(1)), loss_fn=nn.MSELoss(), batch_size=32)


def _relu_before_logits(fixed: bool) -> Setup:
    """A ReLU after every Linear, the last one included."""
    torch.manual_seed(0)
    (x, y), _ = breast_cancer()
    layers = [nn.Linear(30, 32), nn.ReLU(), nn.Linear(32, 1)]
    model = nn.Sequential(*layers) if fixed else nn.Sequential(*layers, nn.ReLU())
    return Setup(model=model, train_data=(x, y.unsqueeze(1)), loss_fn=nn.BCEWithLogitsLoss())


def _one_unit_cross_entropy(fixed: bool) -> Setup:
    """Binary classification with one output unit and CrossEntropyLoss (always 0)."""
    torch.manual_seed(0)
    (x, y), _ = breast_cancer()
    model = nn.Sequential(nn.Linear(30, 32), nn.ReLU(), nn.Linear(32, 1))
    return Setup(model=model, train_data=(x, y.unsqueeze(1)),
                 loss_fn=nn.BCEWithLogitsLoss() if fixed else nn.CrossEntropyLoss(), task="binary")


def _multilabel(y: torch.Tensor) -> torch.Tensor:
    return torch.stack([(y % 2 == 0), (y >= 5), (y == 0) | (y == 8)], dim=1).float()  # (N, 3), several 1s per row


def _softmax_mse_multilabel(fixed: bool) -> Setup:
    torch.manual_seed(0)
    (x, y), _ = digits()
    model = nn.Sequential(nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 3), nn.Sigmoid() if fixed else nn.Softmax(dim=1))
    return Setup(model=model, train_data=(x, _multilabel(y)), loss_fn=nn.MSELoss())


def _cross_entropy_multilabel(fixed: bool) -> Setup:
    torch.manual_seed(0)
    (x, y), _ = digits()
    model = nn.Sequential(nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 3))
    return Setup(model=model, train_data=(x, _multilabel(y)),
                 loss_fn=nn.BCEWithLogitsLoss() if fixed else nn.CrossEntropyLoss())


def _mse_on_class_indices(fixed: bool) -> Setup:
    """Wine cultivars 0, 1, 2 predicted as one number with MSE."""
    torch.manual_seed(0)
    x, y = wine()[0]
    if fixed:
        model = nn.Sequential(nn.Linear(13, 32), nn.ReLU(), nn.Linear(32, 3))
        return Setup(model=model, train_data=(x, y), loss_fn=nn.CrossEntropyLoss(), batch_size=32)
    model = nn.Sequential(nn.Linear(13, 32), nn.ReLU(), nn.Linear(32, 1))
    return Setup(model=model, train_data=(x, y.float().unsqueeze(1)), loss_fn=nn.MSELoss(), batch_size=32)


def _huge_init(fixed: bool) -> Setup:
    """A hand-written initialisation with unit-variance weights: logits in the tens at step 0."""
    torch.manual_seed(0)
    train, _ = digits()
    model = nn.Sequential(nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 10))

    def init_weights(m: nn.Module) -> None:
        if isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, mean=0.0, std=1.0)
            nn.init.zeros_(m.bias)

    if not fixed:
        model.apply(init_weights)
    return Setup(model=model, train_data=train, loss_fn=nn.CrossEntropyLoss())


def _raw_regression_targets(fixed: bool) -> Setup:
    """Diabetes progression scores as they come (mean about 150), against an untrained output near 0."""
    from sklearn.datasets import load_diabetes

    torch.manual_seed(0)
    d = load_diabetes()
    x = torch.tensor((d.data - d.data.mean(0)) / d.data.std(0), dtype=torch.float32)
    y = torch.tensor(d.target, dtype=torch.float32).unsqueeze(1)  # (N, 1)
    if fixed:
        y = (y - y.mean()) / y.std()
    model = nn.Sequential(nn.Linear(10, 64), nn.ReLU(), nn.Linear(64, 1))
    return Setup(model=model, train_data=(x, y), loss_fn=nn.MSELoss(), batch_size=32)


CASES = [
    Case("softmax-layer-before-cross-entropy", lambda: _softmax_head(fixed=False), ("LOS001",),
         twin=lambda: _softmax_head(fixed=True), location="model.head.2", select=("LOS",)),
    Case("functional-softmax-before-cross-entropy", lambda: _functional_softmax(fixed=False), ("LOS001",),
         twin=lambda: _functional_softmax(fixed=True), location="los_cases.py", select=("LOS",)),
    Case("sigmoid-before-bce-with-logits", lambda: _sigmoid_into_bce_with_logits(fixed=False), ("LOS001",),
         twin=lambda: _sigmoid_into_bce_with_logits(fixed=True), location="model.3", select=("LOS",)),
    Case("nll-loss-on-logits", lambda: _nll_on_logits(fixed=False), ("LOS002",),
         twin=lambda: _nll_on_logits(fixed=True), location="model.2", select=("LOS",)),
    Case("kl-div-on-probabilities", lambda: _kl_on_probabilities(fixed=False), ("LOS002",),
         twin=lambda: _kl_on_probabilities(fixed=True), location="los_cases.py", select=("LOS",)),
    Case("sigmoid-output-for-regression", lambda: _sigmoid_regression(fixed=False), ("LOS003",),
         twin=lambda: _sigmoid_regression(fixed=True), location="model.3", select=("LOS",)),
    Case("relu-before-bce-with-logits", lambda: _relu_before_logits(fixed=False), ("LOS003",),
         twin=lambda: _relu_before_logits(fixed=True), location="model.3", select=("LOS",)),
    Case("cross-entropy-on-one-unit", lambda: _one_unit_cross_entropy(fixed=False), ("LOS003",),
         twin=lambda: _one_unit_cross_entropy(fixed=True), location="loss_fn", select=("LOS",)),
    Case("softmax-mse-on-multilabel", lambda: _softmax_mse_multilabel(fixed=False), ("LOS003",),
         twin=lambda: _softmax_mse_multilabel(fixed=True), location="model.3", select=("LOS",)),
    Case("cross-entropy-on-multilabel", lambda: _cross_entropy_multilabel(fixed=False), ("LOS003",),
         twin=lambda: _cross_entropy_multilabel(fixed=True), location="loss_fn", select=("LOS",)),
    Case("mse-on-class-indices", lambda: _mse_on_class_indices(fixed=False), ("LOS003",),
         twin=lambda: _mse_on_class_indices(fixed=True), location="loss_fn", select=("LOS",)),
    Case("huge-initial-weights", lambda: _huge_init(fixed=False), ("LOS004",),
         twin=lambda: _huge_init(fixed=True), location="loss_fn", select=("LOS",)),
    Case("unscaled-regression-targets", lambda: _raw_regression_targets(fixed=False), ("LOS004",),
         twin=lambda: _raw_regression_targets(fixed=True), location="loss_fn", select=("LOS",)),
]
