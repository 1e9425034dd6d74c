"""The one trainer of copies: every experiment that trains a copy of the user's model runs through it.

A ``Trainer`` trains one copy on a stream of batches (``FixedBatch``: one batch repeated; ``Epochs``:
reshuffled epochs over samples held in memory) with the user's optimizer, or with a ``Variant`` of the
setup (another learning rate, no weight decay, a module replaced...) described as data and applied here
to the copy and its optimizer. Training is advanced in bouts (``advance``) until a step count, a
deadline (or a ``Budget``), an early stop, a NaN/Inf, a blow-up or a crash. Each trainer keeps its own
seeded RNG stream (dropout masks) and leaves the global one as it was, so interleaving runs changes
nothing. Per step it records curves: the loss, and whatever the ``measure`` callback computes from the
outputs (a task loss, an error rate).

Callbacks bring measurement in from above (this module is core: it imports no probe and no check):
  - ``measure(outputs, batch) -> {name: scalar tensor} | None``: extra curves, computed without gradients;
  - ``probe``: ``before_step()`` after backward, ``after_step(scalars) -> floats`` after the optimizer step
    (the probe folds its own per-step numbers into the step's one host transfer: gradient statistics);
  - ``early_stop(trainer) -> reason | None``: judged after every step (a reason such as "converged"
    becomes the status, and ``advance(..., stop_early=True)`` ends there);
  - ``on_step(trainer)``: after every recorded step (evaluate at checkpoints);
  - ``progress(message)``: at each epoch of an ``Epochs`` stream.

Common interventions are ready-made: ``lr_variant(lr, k)``, ``without_weight_decay()``,
``without_dropout()``, ``reinitialised(seed)``.

Typical use (``ctx`` is anything with ``fresh_model``, ``optimizer_for``, ``loss_of``, ``pair`` and
``forward``, e.g. the playbook's ``Context``)::

    run = Trainer(ctx, FixedBatch(batch), Variant(label="no decay", hyper={"weight_decay": 0.0}), seed=0)
    run.advance(100, Budget(5.0))
    run.curves["loss"], run.status, run.model  # the curve(s), why it ended, the trained copy
"""
from __future__ import annotations

import math
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, Protocol

import torch
from torch import nn

from nndoctor import data as D
from nndoctor.budget import Budget

HOPELESS = 1e6  # a measure this many times its start will not come back: stop spending time on it
FINISHED = ("non-finite", "exploded", "crashed", "released")  # statuses after which training cannot go on


# ----- what to train ----------------------------------------------------------------------------------
@dataclass
class Variant:
    """The user's setup, or the setup with one change, for one run."""

    label: str = "as given"
    lr_scale: float = 1.0  # multiplies every parameter group's learning rate
    hyper: dict[str, Any] = field(default_factory=dict)  # optimizer settings, in every group that has them
    edit: Callable[[nn.Module], None] | None = None  # a change to the model copy (after train()/eval())
    loss_fn: Callable[[Any, Any], torch.Tensor] | None = None  # replaces Setup.loss_fn
    optimizer: Callable[[nn.Module], torch.optim.Optimizer] | None = None  # replaces the user's optimizer
    train_mode: bool = True
    inputs: Callable[[Any], Any] | None = None  # a change to the batch's inputs
    targets: Callable[[Any], Any] | None = None  # a change to the batch's targets (e.g. standardised)


def lr_variant(base_lr: float, k: int) -> Variant:
    """The user's setup with every learning rate times 10**k (one label per rate, so runs can be shared)."""
    return Variant(label=f"lr {float(f'{base_lr * 10.0**k:.3g}'):g}", lr_scale=10.0**k)


# Common interventions, one change each (labels are stable: runs are shared by label).
def without_weight_decay() -> Variant:
    return Variant(label="weight_decay=0", hyper={"weight_decay": 0.0})


def without_dropout() -> Variant:
    return Variant(label="dropout off", edit=_no_dropout)


def reinitialised(seed: int = 0) -> Variant:
    """Every module with ``reset_parameters`` back to its default initialisation (seeded; global RNG kept)."""
    def edit(model: nn.Module) -> None:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            for module in model.modules():
                if callable(getattr(module, "reset_parameters", None)):
                    module.reset_parameters()

    return Variant(label=f"re-initialised (seed {seed})", edit=edit)


def has_dropout(model: nn.Module) -> bool:
    return any(isinstance(m, nn.modules.dropout._DropoutNd) and m.p > 0
               or isinstance(m, nn.MultiheadAttention) and m.dropout > 0 for m in model.modules())


def _no_dropout(model: nn.Module) -> None:
    for m in model.modules():
        if isinstance(m, nn.modules.dropout._DropoutNd):
            m.p = 0.0
        elif isinstance(m, nn.MultiheadAttention):
            m.dropout = 0.0


def scale_lr(optimizer: torch.optim.Optimizer, factor: float) -> None:
    for group in optimizer.param_groups:
        if "lr" in group:
            group["lr"] = group["lr"] * factor


def first_lr(optimizer: torch.optim.Optimizer) -> float | None:
    lr = optimizer.param_groups[0].get("lr") if optimizer.param_groups else None
    return float(lr) if lr is not None else None


class Copies(Protocol):
    """Where copies come from (the playbook's ``Context`` is one)."""

    def fresh_model(self) -> nn.Module: ...
    def optimizer_for(self, model: nn.Module, **overrides: Any) -> torch.optim.Optimizer: ...
    def loss_of(self, model: nn.Module, batch: Any) -> tuple[torch.Tensor, Any]: ...
    def pair(self, batch: Any) -> tuple[Any, Any] | None: ...
    def forward(self, model: nn.Module, inputs: Any) -> Any: ...


class StepProbe(Protocol):
    def before_step(self) -> None: ...
    def after_step(self, scalars: list[torch.Tensor]) -> list[float]: ...


# ----- streams of batches -----------------------------------------------------------------------------
class FixedBatch:
    """The same batch at every step (the single-batch experiment)."""

    per_epoch: int | None = None

    def __init__(self, batch: Any):
        self.batch = batch

    def __call__(self, step: int) -> Any:
        return self.batch


class Epochs:
    """Reshuffled batches over samples held in memory, one permutation per epoch from ``seed``. The last
    partial batch of an epoch is dropped: batch-norm cannot train on one sample. Steps must be asked for
    in order (a trainer does)."""

    def __init__(self, inputs: Any, targets: torch.Tensor, batch_size: int, device: torch.device, seed: int = 0):
        self.inputs, self.targets, self.device = inputs, targets, device
        self.n = len(targets)
        self.batch_size = max(1, min(batch_size, self.n))
        self.per_epoch = self.n // self.batch_size
        self._generator = torch.Generator().manual_seed(seed)
        self._epoch, self._order = -1, torch.arange(self.n)

    def __call__(self, step: int) -> Any:
        epoch, at = divmod(step, self.per_epoch)
        while self._epoch < epoch:
            self._order, self._epoch = torch.randperm(self.n, generator=self._generator), self._epoch + 1
        rows = self._order[at * self.batch_size:(at + 1) * self.batch_size]
        return D.to_device((D.index(self.inputs, rows), self.targets[rows]), self.device)


# ----- a copy in training -----------------------------------------------------------------------------
class Trainer:
    """One copy in training. ``advance`` runs more steps; ``curves`` grow; ``model`` is the trained copy."""

    def __init__(self, ctx: Copies, batches: Callable[[int], Any], variant: Variant | None = None, *,
                 seed: int = 0, measure: Callable[[Any, Any], dict[str, torch.Tensor] | None] | None = None,
                 probe: StepProbe | None = None, early_stop: Callable[["Trainer"], str | None] | None = None,
                 on_step: Callable[["Trainer"], None] | None = None, progress: Callable[[str], None] | None = None,
                 primary: str = "loss", give_up: float = HOPELESS):
        self.ctx = ctx
        self.batches = batches
        self.variant = variant or Variant()
        self.seed = seed
        self.measure_fn, self.probe, self.early_stop = measure, probe, early_stop
        self.on_step, self.progress = on_step, progress
        self.primary = primary  # the curve that says how wrong the model is (for give_up); "loss" when absent
        self.give_up = give_up  # stop once that curve is this many times its start
        self.model = ctx.fresh_model()
        self.model.train(self.variant.train_mode)
        if self.variant.edit is not None:
            self.variant.edit(self.model)
        self.optimizer = (self.variant.optimizer(self.model) if self.variant.optimizer
                          else ctx.optimizer_for(self.model, **self.variant.hyper))
        scale_lr(self.optimizer, self.variant.lr_scale)
        self.lr = first_lr(self.optimizer)
        self.curves: dict[str, list[float]] = {"loss": []}
        self.status = "running"  # running | a reason of early_stop | non-finite | exploded | crashed | released
        self.failure = ""
        self.seconds = 0.0
        self._rng: tuple[torch.Tensor, list[torch.Tensor]] | None = None

    # ----- what the run measured --------------------------------------------------------------------
    @property
    def steps(self) -> int:
        return len(self.curves["loss"])

    @property
    def loss(self) -> list[float]:
        return self.curves["loss"]

    @property
    def measure(self) -> list[float]:
        """The primary curve (e.g. a task loss), else the loss."""
        return self.curves.get(self.primary) or self.curves["loss"]

    @property
    def epochs(self) -> float:
        per_epoch = getattr(self.batches, "per_epoch", None)
        return self.steps / per_epoch if per_epoch else 0.0

    @property
    def finished(self) -> bool:
        return self.status in FINISHED

    def release(self) -> None:
        """Free the copy and its optimizer (large models); the curves stay, training cannot go on."""
        self.model = self.optimizer = self.probe = None
        if not self.finished:
            self.status = "released"

    def batch(self, step: int = 0) -> Any:
        """The batch of ``step``, with the variant's change to the inputs."""
        batch = self.batches(step)
        v = self.variant
        pair = self.ctx.pair(batch) if v.inputs is not None or v.targets is not None else None
        if pair is None:
            return batch
        return (v.inputs(pair[0]) if v.inputs else pair[0], v.targets(pair[1]) if v.targets else pair[1])

    def loss_and_outputs(self, batch: Any) -> tuple[torch.Tensor, Any]:
        if self.variant.loss_fn is None:
            return self.ctx.loss_of(self.model, batch)
        inputs, targets = self.ctx.pair(batch)
        outputs = self.ctx.forward(self.model, inputs)
        return self.variant.loss_fn(outputs, targets), outputs

    # ----- training -------------------------------------------------------------------------------
    def advance(self, steps: int, until: float | Budget, stop_early: bool = True) -> None:
        """Train until ``steps`` steps in all, ``until`` (a ``time.monotonic()`` deadline or a Budget), the
        early stop (when ``stop_early``), a NaN/Inf, a blow-up or a crash."""
        if self.finished or (stop_early and self.status != "running"):
            return
        deadline = time.monotonic() + until.remaining() if isinstance(until, Budget) else until
        start = time.monotonic()
        per_epoch = getattr(self.batches, "per_epoch", None)
        with self._own_rng():
            while self.steps < steps and time.monotonic() < deadline:
                if self.progress is not None and per_epoch and self.steps % per_epoch == 0:
                    epochs = math.ceil(steps / per_epoch)
                    self.progress(f"training a copy, epoch {self.steps // per_epoch + 1}/{epochs}")
                try:
                    values, names = self._step(self.batch(self.steps))
                except Exception as exc:  # the user's code failed mid-run; the curves so far stand
                    self.status, self.failure = "crashed", f"{type(exc).__name__}: {str(exc)[:200]}"
                    break
                if self._record(values, names) or (stop_early and self.status != "running"):
                    break
        self.seconds += time.monotonic() - start

    def _step(self, batch: Any) -> tuple[list[float], list[str]]:
        self.optimizer.zero_grad(set_to_none=True)
        loss, outputs = self.loss_and_outputs(batch)
        with torch.no_grad():
            extra = self.measure_fn(outputs, batch) if self.measure_fn is not None else None
        extra = extra or {}
        scalars = [loss.detach(), *extra.values()]
        loss.backward()
        if self.probe is not None:
            self.probe.before_step()
        self.optimizer.step()
        if self.probe is not None:
            return self.probe.after_step(scalars), list(extra)
        return torch.cat([s.reshape(1).float() for s in scalars]).tolist(), list(extra)  # the step's one host sync

    def _record(self, values: list[float], names: list[str]) -> bool:
        """Append one step's values; True when the run cannot usefully go on."""
        self.curves["loss"].append(values[0])
        for name, value in zip(names, values[1:]):
            self.curves.setdefault(name, []).append(value)
        if not all(math.isfinite(v) for v in values):
            self.status = "non-finite"
            return True
        measure = self.measure
        if abs(measure[-1]) > self.give_up * max(abs(measure[0]), 1e-12):
            self.status = "exploded"
            return True
        if self.early_stop is not None:
            reason = self.early_stop(self)
            if reason and self.status == "running":
                self.status = reason
        if self.on_step is not None:
            self.on_step(self)
        return False

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
        """Steps, status and the start/end/min of each curve, for evidence."""
        out: dict[str, Any] = {"label": self.variant.label, "steps": self.steps, "status": self.status,
                               "seconds": round(self.seconds, 3)}
        if self.lr is not None:
            out["lr"] = self.lr
        for name, values in self.curves.items():
            if values:
                finite = [v for v in values if math.isfinite(v)] or [math.nan]
                out[name] = {"start": _r(values[0]), "end": _r(values[-1]), "min": _r(min(finite))}
        if self.failure:
            out["failure"] = self.failure
        return out


def _r(v: float) -> float:
    return float(f"{v:.4g}") if math.isfinite(v) else v
