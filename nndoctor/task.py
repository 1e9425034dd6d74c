"""What kind of task the targets describe (classification, binary, multilabel, regression)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

LOGIT_CLASS_LOSSES = (nn.CrossEntropyLoss, nn.NLLLoss, nn.MultiMarginLoss)
BINARY_LOSSES = (nn.BCEWithLogitsLoss, nn.BCELoss)
REGRESSION_LOSSES = (nn.MSELoss, nn.L1Loss, nn.SmoothL1Loss, nn.HuberLoss)


@dataclass
class TaskInfo:
    kind: str  # classification | binary | multilabel | regression | unknown
    num_classes: int | None = None  # for classification: from the model's output width when known

    @property
    def is_classification(self) -> bool:
        return self.kind in ("classification", "binary", "multilabel")


def infer_task(declared: str, loss_fn: Any, targets: Any, outputs: Any) -> TaskInfo:
    """Resolve ``Setup.task`` ("auto" guesses from the loss, the targets and the output shape)."""
    out = outputs if isinstance(outputs, torch.Tensor) else None
    y = targets if isinstance(targets, torch.Tensor) else None
    width = int(out.shape[1]) if out is not None and out.ndim >= 2 else None
    if declared != "auto":
        kind = declared
    elif isinstance(loss_fn, LOGIT_CLASS_LOSSES):
        kind = "classification"
    elif isinstance(loss_fn, BINARY_LOSSES):
        kind = "multilabel" if width and width > 1 and y is not None and y.shape == out.shape else "binary"
    elif isinstance(loss_fn, REGRESSION_LOSSES):
        kind = "regression"
    elif y is None:
        kind = "unknown"
    elif not y.is_floating_point() and y.ndim == 1:
        kind = "classification" if (width or 0) > 1 else "binary"
    elif y.is_floating_point() and _is_binary_valued(y):
        kind = "multilabel" if y.ndim == 2 and y.shape[1] > 1 else "binary"
    else:
        kind = "regression" if y is not None and y.is_floating_point() else "unknown"
    num_classes = None
    if kind == "classification":
        num_classes = width if width else (int(y.max()) + 1 if y is not None and y.numel() else None)
    elif kind in ("binary",):
        num_classes = 2
    elif kind == "multilabel":
        num_classes = width
    return TaskInfo(kind, num_classes)


def _is_binary_valued(y: torch.Tensor) -> bool:
    return bool(y.numel()) and bool(((y == 0) | (y == 1)).all())
