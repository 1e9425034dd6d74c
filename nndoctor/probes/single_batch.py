"""The single-batch experiment: a copy trained on one fixed batch, and what happens, step by step.

``OneBatch`` is the one trainer of copies (``nndoctor/trainer.py``) on a ``FixedBatch``, with the user's
optimizer or a ``Variant`` of the setup, measuring per step the loss the optimizer minimises and the
task's own error on the batch (``TaskMeter``), so that a loss falling while the error rises shows, and
judging the ``Goal`` (reached and stayed) as its early stop. Runs can be advanced in several bouts (a
short run first, more steps only when needed), and each keeps its own RNG stream.

``descent_check`` measures which way one optimizer step moves the losses, to first order and as a
small finite step. Only measures: no verdicts here.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from nndoctor.probes.grad_stats import GradStats
from nndoctor.probes.scoring import _threshold, main_output
from nndoctor.trainer import HOPELESS, FixedBatch, Trainer, Variant, lr_variant

__all__ = ["TaskMeter", "Goal", "OneBatch", "Variant", "lr_variant", "Directions", "descent_check"]

HOLD = 3  # consecutive steps at the goal before it counts as reached (dropout makes single steps lucky)
# Then it must stay: at the goal in KEEP of a window of STAY times the way there (at least MIN_STAY steps).
# Overshooting runs (SGD with momentum 0.99) touch the goal and leave it; dropout noise stays within KEEP.
STAY, KEEP, MIN_STAY = 0.25, 0.8, 20


# ----- the task's own error -------------------------------------------------------------------------
class TaskMeter:
    """How wrong the outputs are for the task, whatever the user's loss says: a continuous loss chosen
    by nndoctor (cross-entropy, binary cross-entropy or MSE) and an error in [0, 1] for classification
    (share of wrong labels) or the MSE over the targets' variance for regression (1 - R²)."""

    def __init__(self, kind: str, targets: torch.Tensor, logits_threshold: float, layout: str):
        self.kind = kind
        self.targets = targets
        self.threshold = logits_threshold
        self.layout = layout  # how outputs are arranged against targets (see build)
        if kind in ("binary", "multilabel"):
            labels = targets.reshape(len(targets), -1).float()
            if not bool(((labels >= 0) & (labels <= 1)).all()):  # e.g. -1/+1 labels: the task is still yes/no
                labels = (labels > 0.5).float()
            self.labels = labels  # (N, K)
        if kind == "regression":
            y = targets.reshape(len(targets), -1).float()
            spread = float(y.var(0, unbiased=False).mean()) if len(y) > 1 else 0.0
            self.spread = spread if spread > 1e-12 else max(float((y**2).mean()), 1.0)

    @classmethod
    def build(cls, kind: str, loss_fn: Any, outputs: Any, targets: Any) -> "TaskMeter | None":
        """A meter for these outputs and targets, or None when they do not fit the task's form."""
        if not isinstance(targets, torch.Tensor) or targets.ndim == 0:
            return None
        n = len(targets)
        out = main_output(outputs, n)
        if out is None or not out.is_floating_point():
            return None
        y = targets
        layout = ""
        threshold = 0.0
        if kind == "classification" or (kind == "binary" and out.ndim == 2 and out.shape[1] == 2 and y.numel() == n):
            kind = "classification"
            if y.is_floating_point() and y.shape == out.shape and out.ndim == 2:
                layout = "probabilities"  # class-probability targets (soft or one-hot labels)
            elif not y.is_floating_point() and out.ndim == y.ndim + 1 and out.shape[2:] == y.shape[1:]:
                layout = "channels"  # (N, C, ...) against (N, ...)
            elif not y.is_floating_point() and out.ndim == y.ndim + 1 and out.shape[:-1] == y.shape:
                layout = "last"  # (N, ..., C) against (N, ...)
            else:
                return None
        elif kind in ("binary", "multilabel"):
            if out.numel() != y.numel():
                return None
            threshold = _threshold(loss_fn, out.detach().float())
        elif kind == "regression":
            if out.numel() != y.numel():
                return None
        else:
            return None
        meter = cls(kind, y, threshold, layout)
        try:
            task_loss, error = meter(outputs)
        except (RuntimeError, ValueError, IndexError):  # e.g. class indices out of range: DAT003's business
            return None
        return meter if task_loss.numel() == 1 and error.numel() == 1 else None

    def __call__(self, outputs: Any) -> tuple[torch.Tensor, torch.Tensor]:
        """(task loss, error) as 0-dim tensors on the outputs' device: no host sync here."""
        y = self.targets
        n = len(y)
        out = main_output(outputs, n).float()
        if self.kind == "classification":
            if self.layout == "last":
                out = out.movedim(-1, 1)
            if self.layout == "probabilities":
                return F.cross_entropy(out, y.float()), (out.argmax(1) != y.argmax(1)).float().mean()
            valid = y != -100  # cross-entropy's default ignore_index
            wrong = (out.argmax(1) != y) & valid
            return F.cross_entropy(out, y), wrong.sum() / valid.sum().clamp_min(1)
        if self.kind in ("binary", "multilabel"):
            scores, labels = out.reshape(n, -1), self.labels
            if self.threshold == 0.5:  # probabilities
                task_loss = F.binary_cross_entropy(scores.clamp(1e-7, 1 - 1e-7), labels)
            else:
                task_loss = F.binary_cross_entropy_with_logits(scores, labels)
            return task_loss, ((scores > self.threshold) != (labels > 0.5)).float().mean()
        mse = F.mse_loss(out.reshape(n, -1), y.reshape(n, -1).float())
        return mse, mse / self.spread


# ----- a copy trained on one batch towards the goal ---------------------------------------------------
class Goal:
    """The early stop of a single-batch run: the task error at most ``error_ok`` (when a TaskMeter fits),
    else the loss at most ``loss_ok`` of its (positive) start. Reached: HOLD steps in a row at the goal.
    Converged: then at the goal in KEEP of the window after it, and at its end."""

    def __init__(self, error_ok: float, loss_ok: float):
        self.error_ok, self.loss_ok = error_ok, loss_ok
        self.converged_at: int | None = None  # steps taken to reach the goal, where it then stayed
        self.first_reached: int | None = None  # steps taken to reach the goal the first time (stay or not)
        self._streak = 0  # consecutive steps at the goal
        self._reached: int | None = None  # where the current attempt at the goal began
        self._stayed: list[bool] = []  # at the goal or not, each step since then

    def __call__(self, run: Trainer) -> str | None:
        error, loss = run.curves.get("error"), run.loss
        at_goal = error[-1] <= self.error_ok if error else loss[0] > 0 and loss[-1] <= self.loss_ok * loss[0]
        self._judge(at_goal, run.steps)
        return "converged" if self.converged_at is not None else None

    def _judge(self, at_goal: bool, steps: int) -> None:
        if self.converged_at is not None:
            return
        self._streak = self._streak + 1 if at_goal else 0
        if self._reached is None:
            if self._streak >= HOLD:
                self._reached, self._stayed = steps - HOLD + 1, []
                self.first_reached = self.first_reached or self._reached
            return
        self._stayed.append(at_goal)
        if len(self._stayed) >= max(MIN_STAY, math.ceil(STAY * self._reached)):
            if sum(self._stayed) >= KEEP * len(self._stayed) and self._streak >= HOLD:
                self.converged_at = self._reached
            else:
                self._reached = None


class OneBatch(Trainer):
    """A copy trained (by the one trainer of copies) on one fixed batch, recording per step the loss the
    optimizer minimises and the task's own error on the batch (``TaskMeter``), so that a loss falling
    while the error rises shows, and judging the ``Goal``. ``record_grads``: gradient statistics per step."""

    def __init__(self, ctx: Any, batch: Any, variant: Variant, *, kind: str, error_ok: float, loss_ok: float,
                 record_grads: bool = False, seed: int = 0, give_up: float = HOPELESS):
        self.kind = kind
        self.goal = Goal(error_ok, loss_ok)
        self.meter: TaskMeter | None = None
        self._meter_built = False
        super().__init__(ctx, FixedBatch(batch), variant, seed=seed, measure=self._measure, early_stop=self.goal,
                         primary="task_loss", give_up=give_up)
        self.probe = GradStats(self.model) if record_grads else None

    @property
    def stats(self) -> GradStats | None:
        """The gradient statistics recorded per step (None: not recorded, or no longer)."""
        return self.probe

    @stats.setter
    def stats(self, value: GradStats | None) -> None:
        self.probe = value

    @property
    def task_loss(self) -> list[float]:
        return self.curves.get("task_loss", [])

    @property
    def error(self) -> list[float]:
        return self.curves.get("error", [])

    @property
    def converged_at(self) -> int | None:
        return self.goal.converged_at

    @property
    def first_reached(self) -> int | None:
        return self.goal.first_reached

    @property
    def converged(self) -> bool:
        return self.goal.converged_at is not None

    def task_measures(self, outputs: Any) -> tuple[torch.Tensor, torch.Tensor] | None:
        if not self._meter_built:
            self._meter_built = True
            pair = self.ctx.pair(self.batch())
            if pair is not None and outputs is not None:
                loss_fn = self.variant.loss_fn or self.ctx.setup.loss_fn
                self.meter = TaskMeter.build(self.kind, loss_fn, outputs, pair[1])
        return self.meter(outputs) if self.meter is not None else None

    def _measure(self, outputs: Any, batch: Any) -> dict[str, torch.Tensor] | None:
        task = self.task_measures(outputs)
        return {"task_loss": task[0], "error": task[1]} if task is not None else None

    def summary(self) -> dict[str, Any]:
        return {**super().summary(), "converged_at": self.converged_at}


def _r(v: float) -> float:
    return float(f"{v:.4g}") if math.isfinite(v) else v


# ----- which way one step goes ------------------------------------------------------------------------
@dataclass
class Directions:
    """Where one optimizer step from the initial weights goes, to first order and as a finite step."""

    cos_update_task: float | None  # cosine of the update with the task loss's gradient (> 0: uphill)
    cos_update_loss: float  # cosine of the update with the user's loss's gradient (> 0: it climbs its own loss)
    cos_loss_task: float | None  # cosine between the gradients of the user's loss and of the task loss
    task_change: float | None  # task loss after one optimizer step minus before
    descent_change: float | None  # task loss after a step of the same length along -grad(task loss), minus before
    loss_change: float  # the user's loss after one optimizer step minus before
    step_norm: float

    def as_evidence(self) -> dict[str, Any]:
        return {k: (_r(v) if isinstance(v, float) else v) for k, v in self.__dict__.items()}


def descent_check(trainer: OneBatch) -> Directions | None:
    """One step of ``trainer``'s optimizer from its initial weights (the trainer must be fresh and is
    spent afterwards), compared with the gradients of the user's loss and of the task loss. Every
    forward pass uses the same dropout mask. None when no step could be measured."""
    params = [p for p in trainer.model.parameters() if p.requires_grad]
    seed = trainer.seed
    batch = trainer.batch()

    def losses() -> tuple[torch.Tensor, torch.Tensor | None]:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            loss, outputs = trainer.loss_and_outputs(batch)
            task = trainer.task_measures(outputs)
        return loss, (task[0] if task is not None else None)

    loss, task_loss = losses()
    g_loss = _grads(loss, params, retain=task_loss is not None)
    g_task = _grads(task_loss, params) if task_loss is not None else None
    with torch.no_grad():
        start = [p.detach().clone() for p in params]
        for p, g in zip(params, g_loss):
            p.grad = g.clone()
        trainer.optimizer.step()
        update = torch.cat([(p - s).reshape(-1) for p, s in zip(params, start)])  # (P,)
        step_norm = float(update.norm())
        if not math.isfinite(step_norm) or step_norm == 0.0:
            return None
        after_loss, after_task = losses()
        flat_loss, flat_task = _flat(g_loss), (_flat(g_task) if g_task is not None else None)
        descent_change = None
        if flat_task is not None and float(flat_task.norm()) > 0:
            _assign(params, start, -step_norm * flat_task / flat_task.norm())
            descent_change = float(losses()[1] - task_loss.detach())
        _assign(params, start, torch.zeros_like(update))
    return Directions(
        cos_update_task=_cos(update, flat_task) if flat_task is not None else None,
        cos_update_loss=_cos(update, flat_loss),
        cos_loss_task=_cos(flat_loss, flat_task) if flat_task is not None else None,
        task_change=float(after_task - task_loss.detach()) if task_loss is not None else None,
        descent_change=descent_change,
        loss_change=float(after_loss - loss.detach()),
        step_norm=step_norm,
    )


def _grads(value: torch.Tensor, params: list[torch.Tensor], retain: bool = False) -> list[torch.Tensor]:
    grads = torch.autograd.grad(value, params, retain_graph=retain, allow_unused=True)
    return [torch.zeros_like(p) if g is None else g.detach() for p, g in zip(params, grads)]


def _flat(tensors: list[torch.Tensor]) -> torch.Tensor:
    return torch.cat([t.reshape(-1).float() for t in tensors])


def _assign(params: list[torch.Tensor], start: list[torch.Tensor], offset: torch.Tensor) -> None:
    """Set ``params`` to ``start + offset`` (``offset`` flat, in parameter order)."""
    at = 0
    for p, s in zip(params, start):
        p.copy_(s + offset[at:at + p.numel()].reshape(p.shape).to(p.dtype))
        at += p.numel()


def _cos(a: torch.Tensor, b: torch.Tensor) -> float:
    denominator = float(a.norm() * b.norm())
    return _r(float(a @ b) / denominator) if denominator > 0 else 0.0
