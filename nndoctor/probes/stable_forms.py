"""StableForms: the harm a fragile formulation does on this program's own values, measured.

One forward, loss and backward on a copy, twice on the same batch and seed: as written, and with the fragile
formulations swapped for their exact, stable equivalents by a ``TorchFunctionMode``:
``log(softmax(x))`` -> ``log_softmax(x)``, ``log(sigmoid(x))`` -> ``logsigmoid(x)``,
``log(1 - sigmoid(x))`` -> ``logsigmoid(-x)``, ``binary_cross_entropy(sigmoid(x), y)`` ->
``binary_cross_entropy_with_logits(x, y)``. Mathematically the two passes are the same function, so any
difference in the loss or the gradients is rounding the fragile form adds: that difference is the harm.
Only measures.
"""
from __future__ import annotations

import math
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch.overrides import TorchFunctionMode

LOGS = {"log", "log_"}


@dataclass
class Harm:
    loss: float  # as written
    stable_loss: float  # with the stable formulations
    loss_difference: float  # |loss - stable| / max(|stable|, 1e-3): a converged loss's rounding is no harm
    gradient_difference: float  # ||g - g_stable|| / max(||g_stable||, 1e-30), all parameters together
    non_finite: bool  # the loss or a gradient is NaN/Inf as written but finite when stable
    swapped: int  # fragile calls the stable pass replaced


class _Stable(TorchFunctionMode):
    """Replaces the fragile formulations above by their stable forms (tracking softmax/sigmoid outputs)."""

    def __init__(self) -> None:
        super().__init__()
        self.made: dict[int, tuple[weakref.ref, str, torch.Tensor, Any]] = {}  # id(p) -> (p, op, logits, dim)
        self.swapped = 0

    def _source(self, t: Any) -> tuple[str, torch.Tensor, Any] | None:
        entry = self.made.get(id(t)) if isinstance(t, torch.Tensor) else None
        return entry[1:] if entry is not None and entry[0]() is t else None

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        name = getattr(func, "__name__", "")
        first = args[0] if args else kwargs.get("input")
        source = self._source(first)
        if source is not None and name in LOGS:
            op, logits, dim = source
            self.swapped += 1
            if op == "softmax":
                return F.log_softmax(logits, dim)
            return F.logsigmoid(-logits if op == "1-sigmoid" else logits)
        if source is not None and func is F.binary_cross_entropy and source[0] == "sigmoid":
            self.swapped += 1
            rest = dict(kwargs)
            rest.pop("input", None)
            target = args[1] if len(args) > 1 else rest.pop("target")
            weight = args[2] if len(args) > 2 else rest.pop("weight", None)
            reduction = rest.get("reduction", "mean")
            return F.binary_cross_entropy_with_logits(source[1], target, weight=weight, reduction=reduction)
        result = func(*args, **kwargs)
        if name in ("softmax", "sigmoid") and isinstance(first, torch.Tensor) and isinstance(result, torch.Tensor):
            dim = kwargs.get("dim", args[1] if len(args) > 1 else None) if name == "softmax" else None
            if name == "softmax" and dim is None:
                dim = 0 if first.ndim in (0, 1, 3) else 1  # the legacy implicit dim of F.softmax
            self.made[id(result)] = (weakref.ref(result), name, first, dim)
        elif name == "__rsub__" and source is not None and source[0] == "sigmoid" and len(args) > 1 and args[1] == 1:
            self.made[id(result)] = (weakref.ref(result), "1-sigmoid", source[1], None)
        return result


def _pass(model: torch.nn.Module, loss_of: Callable[[torch.nn.Module], torch.Tensor], seed: int,
          stable: bool) -> tuple[float, list[torch.Tensor | None], int]:
    mode = _Stable() if stable else None
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        if mode is not None:
            with mode:
                loss = loss_of(model)
        else:
            loss = loss_of(model)
    loss.backward()
    grads = [None if p.grad is None else p.grad.detach().float().clone() for p in model.parameters()]
    return float(loss.detach()), grads, mode.swapped if mode is not None else 0


def measure_harm(make_model: Callable[[], torch.nn.Module], loss_of: Callable[[torch.nn.Module], torch.Tensor],
                 seed: int = 0) -> Harm | None:
    """The difference the stable formulations make to the loss and the gradients of one pass (on two fresh
    copies from ``make_model``); None when nothing was swapped (the fragile form is not one of these)."""
    loss, grads, _ = _pass(make_model().train(), loss_of, seed, stable=False)
    stable_loss, stable_grads, swapped = _pass(make_model().train(), loss_of, seed, stable=True)
    if not swapped:
        return None
    pairs = [(g, s) for g, s in zip(grads, stable_grads) if g is not None and s is not None]
    finite = all(bool(torch.isfinite(g).all()) for g, _ in pairs) and math.isfinite(loss)
    stable_finite = all(bool(torch.isfinite(s).all()) for _, s in pairs) and math.isfinite(stable_loss)
    diff = sum(float((torch.nan_to_num(g) - s).pow(2).sum()) for g, s in pairs) ** 0.5 if stable_finite else 0.0
    norm = sum(float(s.pow(2).sum()) for _, s in pairs) ** 0.5 if stable_finite else 0.0
    loss_difference = abs(loss - stable_loss) / max(abs(stable_loss), 1e-3) if finite and stable_finite else math.inf
    return Harm(loss, stable_loss, loss_difference, diff / max(norm, 1e-30), (not finite) and stable_finite, swapped)
