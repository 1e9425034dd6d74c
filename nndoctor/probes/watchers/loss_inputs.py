"""What reaches the loss in the first training steps: ``F.cross_entropy`` and
``F.binary_cross_entropy_with_logits`` (``nn.CrossEntropyLoss`` / ``nn.BCEWithLogitsLoss`` call them) are
wrapped for the Monitor's lifetime; the first ``LOOK`` calls with gradients on have their input read
(probability rows? values all in (0, 1) after a sigmoid?), later calls only pass through. This sees eager
and compiled models alike (the loss is outside the compiled graph, or the wrapper steps aside inside it),
and functional losses in Lightning's ``training_step``."""
from __future__ import annotations

import sys
from typing import Any

import torch
import torch.nn.functional as F

from nndoctor.probes.errors import user_call_site
from nndoctor.probes.watchers.base import Watcher, outside_nndoctor

LOOK = 8  # calls read: enough to see it is every batch, cheap (one host read each, the first steps only)
ROW_SUM_TOLERANCE = 1e-3  # as the check side (checks/loss.py): softmax rows sum to 1 within float rounding


def probability_rows(x: torch.Tensor) -> bool:
    """Every value in [0, 1] and every row along the class axis (dim 1) summing to 1, over >= 2 classes."""
    if x.ndim < 2 or x.shape[1] < 2 or not x.numel():
        return False
    xf = x.detach().float()
    return bool(((xf >= 0) & (xf <= 1)).all() & ((xf.sum(1) - 1).abs() < ROW_SUM_TOLERANCE).all())


def _grad_op(x: torch.Tensor) -> str:
    fn = getattr(x, "grad_fn", None)
    return type(fn).__name__ if fn is not None else ""


class LossInputsWatcher(Watcher):
    name = "loss-inputs"

    def __init__(self, run) -> None:
        super().__init__(run)
        self.looked: dict[str, int] = {}  # calls read, per loss
        self.probabilities: dict[str, int] = {}  # of those, calls whose input was probabilities
        self.origin: dict[str, str] = {}  # the autograd op that made the input (SoftmaxBackward0...), "" if unseen
        self.site: dict[str, str] = {}
        self.classes: dict[str, int] = {}
        self._patches = self.patches()

    def start(self) -> None:
        for name in ("cross_entropy", "binary_cross_entropy_with_logits"):
            self._patches.method(F, name, before=self._reader(name))

    def _reader(self, name: str):
        def read(*args: Any, **kwargs: Any) -> None:
            if self.looked.get(name, 0) < LOOK:
                self._look(name, args[0] if args else kwargs.get("input"))
                self._target(args[1:], kwargs)
        return read

    def stop(self) -> None:
        self._patches.undo()

    def _target(self, args: tuple, kwargs: dict) -> None:
        """The first training loss's target: its leading size is the number of samples (sequences.py reads it)."""
        target = args[0] if args else kwargs.get("target")
        if not isinstance(target, torch.Tensor) or not torch.is_grad_enabled() or self.run.replaying:
            return
        if getattr(self.run, "loss_target_shape", None) is None:
            self.run.loss_target_shape = tuple(target.shape)
        # per root (the one whose forward ran last), its first loss's target: sequences.py asks "next-token?"
        call = self.run.last_train_call
        firsts = self.run.__dict__.setdefault("first_losses", {})
        if call is not None and id(call[0]) not in firsts and len(firsts) < 4:
            firsts[id(call[0])] = (target.detach(), call)

    def _look(self, name: str, x: Any) -> None:
        try:
            if (self.run.replaying or not isinstance(x, torch.Tensor) or not x.is_floating_point()
                    or not x.requires_grad or not torch.is_grad_enabled() or torch.compiler.is_compiling()):
                return  # evaluation, a watcher's replay, or inside a compiled graph: not a training step's loss
            self.looked[name] = self.looked.get(name, 0) + 1
            op = _grad_op(x)
            if name == "cross_entropy":
                hit = probability_rows(x)
                self.classes[name] = int(x.shape[1]) if x.ndim >= 2 else 1
            else:  # a sigmoid's output (the graph says so), or every value inside (0, 1) for a compiled model
                hit = op == "SigmoidBackward0" or (x.numel() >= 64 and bool(((x > 0) & (x < 1)).all()))
            if hit:
                self.probabilities[name] = self.probabilities.get(name, 0) + 1
                self.origin.setdefault(name, op)
                if name not in self.site:
                    self.site[name] = user_call_site(outside_nndoctor(sys._getframe()))[0]
        except Exception:  # never into the user's loop
            self.broken = True

    def describe(self) -> str:
        return "the input of the loss in the first training steps (probabilities into a logits loss)"
