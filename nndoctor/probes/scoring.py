"""Scores on the user's own data, in one form shared by the model and the scikit-learn baselines.

Targets and model outputs become plain numpy predictions (class labels, 0/1 labels, or floats); every
built-in metric is the mean of per-sample contributions, so the standard error of a score, and of the
difference between two scores on the same samples, comes for free. Verdicts use those errors to allow
for the size of the evaluation set.
"""
from __future__ import annotations

import math
import re
from typing import Any

import numpy as np
import torch
from torch import nn

from nndoctor.data import tensors_in

# Accuracy misleads when one class dwarfs another: from this ratio of class counts on, balanced
# accuracy (the mean of per-class recalls) is the metric.
IMBALANCE_RATIO = 3.0

# Metric names as users write them in a KnownResult -> the value nndoctor computes.
_ALIASES = {
    "accuracy": ("accuracy", "acc", "top1", "top1accuracy", "top1acc", "valaccuracy", "testaccuracy"),
    "balanced_accuracy": ("balancedaccuracy", "balancedacc"),
    "error_rate": ("error", "errorrate", "top1error", "misclassificationrate", "testerror"),
    "r2": ("r2", "rsquared", "r2score", "coefficientofdetermination"),
    "neg_mse": ("negmse", "negativemse", "negmeansquarederror", "negativemeansquarederror"),
    "mse": ("mse", "meansquarederror", "valmse", "testmse"),
    "rmse": ("rmse", "rootmeansquarederror"),
    "mae": ("mae", "meanabsoluteerror"),
}
_LOWER_IS_BETTER = {"error_rate", "mse", "rmse", "mae"}


def canonical_metric(name: str) -> str | None:
    """``"Top-1 Accuracy"`` -> ``"accuracy"``; None for a metric nndoctor does not compute itself."""
    key = re.sub(r"[^a-z0-9]", "", name.lower())
    return next((canon for canon, names in _ALIASES.items() if key in names), None)


def higher_is_better(metric: str) -> bool:
    return metric not in _LOWER_IS_BETTER


def target_labels(kind: str, targets: Any) -> np.ndarray | None:
    """Targets as metrics and baselines use them: class labels (N,) for classification and binary,
    0/1 labels (N, K) for multilabel, floats (N, K) for regression. None when the targets are not one
    per sample (per-token labels) or not a tensor."""
    if not isinstance(targets, torch.Tensor) or targets.ndim == 0:
        return None
    y = targets.detach().cpu()
    n = len(y)
    if kind == "classification":
        if y.is_floating_point() and y.ndim == 2:  # class probabilities (soft or one-hot targets)
            return y.argmax(1).numpy()
        return y.long().numpy() if y.ndim == 1 else None
    if kind == "binary":
        return (y.reshape(n).float() > 0.5).long().numpy() if y.numel() == n else None
    if kind == "multilabel":
        return (y.reshape(n, -1).float() > 0.5).long().numpy()
    if kind == "regression":
        return y.reshape(n, -1).double().numpy()
    return None


def main_output(outputs: Any, n: int) -> torch.Tensor | None:
    """The first tensor of the model's outputs with one row per sample (logits of a tuple or dict output)."""
    return next((t for t in tensors_in(outputs) if t.ndim >= 1 and len(t) == n), None)


def predictions(kind: str, outputs: Any, loss_fn: Any, n: int) -> np.ndarray | None:
    """The model's outputs as predictions in the form of ``target_labels``; None when they do not fit."""
    out = main_output(outputs, n)
    if out is None:
        return None
    out = out.detach().cpu().float()
    if kind == "classification":
        return out.argmax(1).numpy() if out.ndim == 2 else None
    if kind in ("binary", "multilabel"):
        if kind == "binary" and out.ndim == 2 and out.shape[1] == 2:  # two logits for two classes
            return out.argmax(1).numpy()
        scores = out.reshape(n) if kind == "binary" and out.numel() == n else out.reshape(n, -1)
        return (scores > _threshold(loss_fn, scores)).long().numpy()
    if kind == "regression":
        return out.reshape(n, -1).double().numpy()
    return None


def _threshold(loss_fn: Any, scores: torch.Tensor) -> float:
    """0 for logits, 0.5 for probabilities (BCELoss, or outputs that all lie in [0, 1] under another loss)."""
    if isinstance(loss_fn, nn.BCEWithLogitsLoss):
        return 0.0
    if isinstance(loss_fn, nn.BCELoss) or bool(((scores >= 0) & (scores <= 1)).all()):
        return 0.5
    return 0.0


def primary_metric(kind: str, train_labels: np.ndarray) -> str:
    """Accuracy (balanced accuracy when classes are imbalanced), elementwise accuracy, or R²."""
    if kind == "regression":
        return "r2"
    if kind in ("classification", "binary"):
        counts = np.bincount(train_labels.astype(np.int64))
        counts = counts[counts > 0]
        if len(counts) > 1 and counts.max() >= IMBALANCE_RATIO * counts.min():
            return "balanced_accuracy"
    return "accuracy"


def contributions(metric: str, pred: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Per-sample contributions (N,) whose mean is the metric; non-finite predictions count as worst."""
    n = len(y)
    if metric in ("accuracy", "balanced_accuracy"):
        correct = (pred.reshape(n, -1) == y.reshape(n, -1)).mean(1)  # multilabel: share of labels right
        if metric == "accuracy":
            return correct
        classes, index, counts = np.unique(y, return_inverse=True, return_counts=True)
        return correct * n / (len(classes) * counts[index])  # each class weighs the same in the mean
    errors = np.nan_to_num(pred.reshape(n, -1) - y.reshape(n, -1), nan=np.inf)  # (N, K)
    if metric == "r2":
        spread = ((y - y.mean(0)) ** 2).sum(0)  # (K,) total sum of squares per output
        spread = np.where(spread > 0, spread, 1.0)
        return 1.0 - n * (errors**2 / spread).mean(1)
    if metric == "neg_mse":
        return -(errors**2).mean(1)
    raise ValueError(f"no per-sample form for metric {metric!r}")


def score(metric: str, pred: np.ndarray, y: np.ndarray) -> float:
    """The metric's value; accuracy-like and R² via their contributions, the others directly."""
    if metric in ("accuracy", "balanced_accuracy", "r2", "neg_mse"):
        with np.errstate(over="ignore", invalid="ignore"):
            value = float(contributions(metric, pred, y).mean())
        return value if math.isfinite(value) else -math.inf
    if metric == "error_rate":
        return 1.0 - score("accuracy", pred, y)
    if metric == "mse":
        return -score("neg_mse", pred, y)
    if metric == "rmse":
        return math.sqrt(max(score("mse", pred, y), 0.0))
    if metric == "mae":
        return float(np.abs(pred.reshape(len(y), -1) - y.reshape(len(y), -1)).mean())
    raise ValueError(f"unknown metric {metric!r}")


def all_scores(kind: str, pred: np.ndarray, y: np.ndarray) -> dict[str, float]:
    """Every built-in metric that applies to the task, for matching the user's known results."""
    names = ("r2", "neg_mse", "mse", "rmse", "mae") if kind == "regression" else (
        ("accuracy", "error_rate") if kind == "multilabel" else ("accuracy", "balanced_accuracy", "error_rate"))
    return {name: score(name, pred, y) for name in names}


def standard_error(metric: str, pred: np.ndarray, y: np.ndarray, other: np.ndarray | None = None) -> float:
    """Standard error of the metric (or, given ``other`` predictions, of the paired difference)."""
    with np.errstate(over="ignore", invalid="ignore"):
        c = contributions(metric, pred, y)
        if other is not None:
            c = c - contributions(metric, other, y)
        if len(c) < 2 or not np.isfinite(c).all():
            return 0.0
        return float(c.std(ddof=1) / math.sqrt(len(c)))
