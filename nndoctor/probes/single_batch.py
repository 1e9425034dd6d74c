"""The single-batch experiment: train a copy on one fixed batch and record what happens, step by step.

A ``Trainer`` trains one copy of the model with the user's optimizer (or a ``Variant`` of the setup:
another learning rate, no weight decay, a module replaced...) and records, per step, the loss the
optimizer minimises and the task's own error on the batch (``TaskMeter``), so that a loss falling while
the error rises shows. Trainers can be advanced in several bouts (a short run first, more steps only
when needed), and each keeps its own RNG stream, so interleaving them changes nothing.

``descent_check`` measures which way one optimizer step moves the losses, to first order and as a
small finite step. Only measures: no verdicts here.
"""
from __future__ import annotations

import math
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator

import torch
import torch.nn.functional as F
from torch import nn

from nndoctor.probes.grad_stats import GradStats
from nndoctor.probes.scoring import _threshold, main_output

HOLD = 3  # consecutive steps at the goal before it counts as reached (dropout makes single steps lucky)
# Then it must stay: at the goal in KEEP of a window of STAY times the way there (at least MIN_STAY steps).
# Overshooting runs (SGD with momentum 0.99) touch the goal and leave it; dropout noise stays within KEEP.
STAY, KEEP, MIN_STAY = 0.25, 0.8, 20
HOPELESS = 1e6  # a loss this many times its start will not come back: stop spending time on it


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


# ----- one way to run the experiment ------------------------------------------------------------------
@dataclass
class Variant:
    """The user's setup, or the setup with one change, for one single-batch run."""

    label: str = "as given"
    lr_scale: float = 1.0  # multiplies every parameter group's learning rate
    hyper: dict[str, Any] = field(default_factory=dict)  # optimizer settings, in every group that has them
    edit: Callable[[nn.Module], None] | None = None  # a change to the model copy (after train()/eval())
    loss_fn: Callable[[Any, Any], torch.Tensor] | None = None  # replaces Setup.loss_fn
    optimizer: Callable[[nn.Module], torch.optim.Optimizer] | None = None  # replaces the user's optimizer
    train_mode: bool = True
    inputs: Callable[[Any], Any] | None = None  # a change to the batch's inputs


def lr_variant(base_lr: float, k: int) -> Variant:
    """The user's setup with every learning rate times 10**k (one label per rate, so runs can be shared)."""
    return Variant(label=f"lr {float(f'{base_lr * 10.0**k:.3g}'):g}", lr_scale=10.0**k)


def scale_lr(optimizer: torch.optim.Optimizer, factor: float) -> None:
    for group in optimizer.param_groups:
        if "lr" in group:
            group["lr"] = group["lr"] * factor


def first_lr(optimizer: torch.optim.Optimizer) -> float | None:
    lr = optimizer.param_groups[0].get("lr") if optimizer.param_groups else None
    return float(lr) if lr is not None else None


# ----- a copy in training ---------------------------------------------------------------------------
class Trainer:
    """One copy trained on one batch. ``advance`` runs more steps; the history grows."""

    def __init__(self, ctx: Any, batch: Any, variant: Variant, *, kind: str, error_ok: float,
                 loss_ok: float, record_grads: bool = False, seed: int = 0, give_up: float = HOPELESS):
        self.ctx = ctx
        self.variant = variant
        self.kind = kind
        self.error_ok = error_ok  # converged: the task error at most this (when a TaskMeter fits)
        self.loss_ok = loss_ok  # else: the loss at most this share of its (positive) start
        self.seed = seed
        self.give_up = give_up  # stop once the measure is this many times its start
        pair = ctx.pair(batch)
        if variant.inputs is not None and pair is not None:
            batch = (variant.inputs(pair[0]), pair[1])
        self.batch = batch
        self.model = ctx.fresh_model()
        self.model.train(variant.train_mode)
        if variant.edit is not None:
            variant.edit(self.model)
        self.optimizer = variant.optimizer(self.model) if variant.optimizer else ctx.optimizer_for(self.model, **variant.hyper)
        scale_lr(self.optimizer, variant.lr_scale)
        self.lr = first_lr(self.optimizer)
        self.stats = GradStats(self.model) if record_grads else None
        self.meter: TaskMeter | None = None
        self._meter_built = False
        self.loss: list[float] = []
        self.task_loss: list[float] = []
        self.error: list[float] = []
        self.status = "running"  # running | converged | non-finite | exploded | crashed | released
        self.converged_at: int | None = None  # steps taken to reach the goal, where it then stayed
        self.first_reached: int | None = None  # steps taken to reach the goal the first time (stay or not)
        self.failure = ""
        self.seconds = 0.0
        self._streak = 0  # consecutive steps at the goal
        self._reached: int | None = None  # where the current attempt at the goal began
        self._stayed: list[bool] = []  # at the goal or not, each step since then
        self._rng: tuple[torch.Tensor, list[torch.Tensor]] | None = None

    # ----- what the runs measure ----------------------------------------------------------------
    @property
    def steps(self) -> int:
        return len(self.loss)

    @property
    def converged(self) -> bool:
        return self.converged_at is not None

    @property
    def finished(self) -> bool:
        return self.status in ("non-finite", "exploded", "crashed", "released")

    def release(self) -> None:
        """Free the copy and its optimizer (large models); the history stays, training cannot go on."""
        self.model = self.optimizer = self.stats = None
        if not self.finished:
            self.status = "released"

    @property
    def measure(self) -> list[float]:
        """The continuous measure of how wrong the model is: the task loss, else the user's loss."""
        return self.task_loss if self.meter is not None else self.loss

    def loss_and_outputs(self) -> tuple[torch.Tensor, Any]:
        if self.variant.loss_fn is None:
            return self.ctx.loss_of(self.model, self.batch)
        inputs, targets = self.ctx.pair(self.batch)
        outputs = self.ctx.forward(self.model, inputs)
        return self.variant.loss_fn(outputs, targets), outputs

    def task_measures(self, outputs: Any) -> tuple[torch.Tensor, torch.Tensor] | None:
        if not self._meter_built:
            self._meter_built = True
            pair = self.ctx.pair(self.batch)
            if pair is not None and outputs is not None:
                loss_fn = self.variant.loss_fn or self.ctx.setup.loss_fn
                self.meter = TaskMeter.build(self.kind, loss_fn, outputs, pair[1])
        return self.meter(outputs) if self.meter is not None else None

    # ----- training -------------------------------------------------------------------------------
    def advance(self, steps: int, deadline: float, stop_at_goal: bool = True) -> None:
        """Train until ``steps`` steps in all, the deadline (``time.monotonic()``), the goal (when
        ``stop_at_goal``), a NaN/Inf or a crash."""
        if self.finished or (stop_at_goal and self.converged):
            return
        start = time.monotonic()
        with self._own_rng():
            while self.steps < steps and time.monotonic() < deadline:
                try:
                    values = self._step()
                except Exception as exc:  # the user's code failed mid-run; the history so far stands
                    self.status, self.failure = "crashed", f"{type(exc).__name__}: {str(exc)[:200]}"
                    break
                if self._record(values) or (stop_at_goal and self.converged):
                    break
        self.seconds += time.monotonic() - start

    def _step(self) -> list[float]:
        self.optimizer.zero_grad(set_to_none=True)
        loss, outputs = self.loss_and_outputs()
        with torch.no_grad():
            task = self.task_measures(outputs)
        scalars = [loss.detach(), *(task or ())]
        loss.backward()
        if self.stats is not None:
            self.stats.before_step()
        self.optimizer.step()
        if self.stats is not None:
            return self.stats.after_step(scalars)
        return torch.cat([s.reshape(1).float() for s in scalars]).tolist()  # the step's one host sync

    def _record(self, values: list[float]) -> bool:
        """Append one step's values; True when the run cannot usefully go on."""
        self.loss.append(values[0])
        if self.meter is not None:
            self.task_loss.append(values[1])
            self.error.append(values[2])
        current = self.measure[-1]
        if not all(math.isfinite(v) for v in values):
            self.status = "non-finite"
            return True
        if abs(current) > self.give_up * max(abs(self.measure[0]), 1e-12):
            self.status = "exploded"
            return True
        at_goal = (self.error[-1] <= self.error_ok if self.meter is not None
                   else self.loss[0] > 0 and self.loss[-1] <= self.loss_ok * self.loss[0])
        self._judge_goal(at_goal)
        return False

    def _judge_goal(self, at_goal: bool) -> None:
        """Reached: HOLD steps in a row at the goal. Converged: then at the goal in KEEP of the window
        after it, and at its end."""
        if self.converged_at is not None:
            return
        self._streak = self._streak + 1 if at_goal else 0
        if self._reached is None:
            if self._streak >= HOLD:
                self._reached, self._stayed = self.steps - HOLD + 1, []
                self.first_reached = self.first_reached or self._reached
            return
        self._stayed.append(at_goal)
        if len(self._stayed) >= max(MIN_STAY, math.ceil(STAY * self._reached)):
            if sum(self._stayed) >= KEEP * len(self._stayed) and self._streak >= HOLD:
                self.converged_at = self._reached
                self.status = "converged"
            else:
                self._reached = None

    @contextmanager
    def _own_rng(self) -> Iterator[None]:
        """Run with this trainer's RNG stream (dropout masks), leaving the global one as it was."""
        devices = sorted({p.device.index or 0 for p in self.model.parameters() if p.device.type == "cuda"})
        with torch.random.fork_rng(devices=devices):
            if self._rng is None:
                torch.manual_seed(self.seed)
            else:
                cpu, cuda = self._rng
                torch.set_rng_state(cpu)
                for device, state in zip(devices, cuda):
                    torch.cuda.set_rng_state(state, device)
            try:
                yield
            finally:
                self._rng = (torch.get_rng_state(), [torch.cuda.get_rng_state(d) for d in devices])

    def summary(self) -> dict[str, Any]:
        """Steps and the start/end/min of the loss (and of the task error), for evidence."""
        out: dict[str, Any] = {"label": self.variant.label, "steps": self.steps, "status": self.status,
                               "converged_at": self.converged_at, "seconds": round(self.seconds, 3)}
        if self.lr is not None:
            out["lr"] = self.lr
        for name, values in (("loss", self.loss), ("task_loss", self.task_loss), ("error", self.error)):
            if values:
                finite = [v for v in values if math.isfinite(v)] or [math.nan]
                out[name] = {"start": _r(values[0]), "end": _r(values[-1]), "min": _r(min(finite))}
        if self.failure:
            out["failure"] = self.failure
        return out


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


def descent_check(trainer: Trainer) -> Directions | None:
    """One step of ``trainer``'s optimizer from its initial weights (the trainer must be fresh and is
    spent afterwards), compared with the gradients of the user's loss and of the task loss. Every
    forward pass uses the same dropout mask. None when no step could be measured."""
    params = [p for p in trainer.model.parameters() if p.requires_grad]
    seed = trainer.seed

    def losses() -> tuple[torch.Tensor, torch.Tensor | None]:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            loss, outputs = trainer.loss_and_outputs()
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
