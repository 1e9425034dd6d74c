"""Is the scalar handed to ``backward()`` minus a loss that is non-negative by construction?

Read from the autograd graph before backward runs: the root node negates (``-loss``, ``-1 * loss``,
``loss / -2``, ``c - loss``), possibly through positive scalings and reductions (``mean``, ``sum``,
``* 0.5``), one built-in loss whose value cannot be negative (cross-entropy, MSE, L1, BCE, ...).
Minimising that scalar maximises the error. A measurement only: the Monitor confirms it against the
curve (the error, the negated value, must actually rise) before it says anything.
"""
from __future__ import annotations

from typing import Any

import torch

# Built-in losses that are never negative on valid inputs: an error to be minimised.
NON_NEGATIVE = {
    "NllLossBackward0": "cross_entropy/nll_loss", "NllLoss2DBackward0": "cross_entropy/nll_loss",
    "MseLossBackward0": "mse_loss", "L1LossBackward0": "l1_loss", "SmoothL1LossBackward0": "smooth_l1_loss",
    "HuberLossBackward0": "huber_loss", "BinaryCrossEntropyBackward0": "binary_cross_entropy",
    "BinaryCrossEntropyWithLogitsBackward0": "binary_cross_entropy_with_logits",
    "SoftMarginLossBackward0": "soft_margin_loss", "MultiMarginLossBackward0": "multi_margin_loss",
    "CtcLossBackward0": "ctc_loss",
}
REDUCTIONS = {"MeanBackward0", "MeanBackward1", "SumBackward0", "SumBackward1"}
MAX_DEPTH = 4


def _constant_sign(node: Any) -> tuple[float, Any] | None:
    """For a product or quotient with one constant operand: (the constant's sign, the other input's node)."""
    (a, _), (b, _) = node.next_functions[:2]
    if (a is None) == (b is None):
        return None  # two tensors that both need gradients, or neither: not a scaling
    const = getattr(node, "_saved_other" if b is None else "_saved_self", None)
    if not isinstance(const, torch.Tensor) or const.numel() != 1 or const.device.type != "cpu":
        return None  # (a device scalar would cost a host sync per step: not read)
    if type(node).__name__.startswith("Div") and b is not None:
        return None  # constant / loss: not a scaling of the loss
    return float(const.reshape(())), a if b is None else b


def negated_loss(loss: torch.Tensor) -> str | None:
    """The name of the non-negative loss that ``loss`` negates, or None."""
    node, negations = loss.grad_fn, 0
    for _ in range(MAX_DEPTH + 1):
        if node is None:
            return None
        name = type(node).__name__
        if name in NON_NEGATIVE:
            return NON_NEGATIVE[name] if negations % 2 else None
        if name == "NegBackward0" or name.startswith("RsubBackward"):
            negations += 1
            node = node.next_functions[0][0]
        elif name in REDUCTIONS:
            node = node.next_functions[0][0]
        elif name.startswith(("MulBackward", "DivBackward")):
            scaled = _constant_sign(node)
            if scaled is None or scaled[0] == 0:
                return None
            negations += scaled[0] < 0
            node = scaled[1]
        else:
            return None
    return None
