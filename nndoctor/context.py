"""The shared state of one playbook run: the setup, copies, cached measurements and the findings so far.

Checks receive a ``Context``. They never touch the user's objects: ``fresh_model()`` and
``optimizer_for()`` hand out copies, and measurements that several checks need are computed once
through ``measure()`` (the single-batch experiment of step 3, the trained copy of step 4: later steps
reuse them instead of training again). Copies are trained by ``nndoctor.trainer.Trainer``, to which a
Context is the source of copies.
"""
from __future__ import annotations

from typing import Any, Callable

import torch
from torch import nn

from nndoctor import data as D
from nndoctor.budget import Budget
from nndoctor.catalogue import Severity
from nndoctor.findings import Finding
from nndoctor.sandbox import copy_model, optimizer_for
from nndoctor.spec import Setup
from nndoctor.task import TaskInfo, infer_task


class SkipCheck(Exception):
    """Raised by a check that cannot run on this setup; the message says why (shown in the report)."""


class Context:
    def __init__(
        self,
        setup: Setup,
        *,
        seed: int = 0,
        budget: Budget | None = None,
        progress: Callable[[str], None] | None = None,
        memory_budget: int | None = None,
    ):
        self.setup = setup
        self.seed = seed
        self.budget = budget or Budget(None)
        self.progress = progress or (lambda message: None)
        self.memory_budget = memory_budget if memory_budget is not None else setup.memory_budget
        self.findings: list[Finding] = []
        self.train = D.DataSource(setup.train_data, setup.batch_size, name="train")
        self.val = D.DataSource(setup.val_data, setup.batch_size, name="val") if setup.val_data is not None else None
        # The pristine copy every experiment starts from: even a user's code that mutates the
        # original model during the run cannot leak into later experiments.
        self._snapshot = copy_model(setup.model)
        self.run_ok = False  # set by step 1 when one training step ran
        self.not_run_reason = ""  # why the later model steps are skipped though step 1 ran (it does not fit)
        self.run_error: BaseException | None = None
        self._measurements: dict[str, Any] = {}
        self.extras: dict[str, Any] = {}  # data shared between checks (e.g. curves for the report)
        self.mode = "default"  # the playbook's mode; "quick" leaves out experiments that only refine a verdict

    # ----- findings -------------------------------------------------------------------------
    def emit(
        self,
        code: str,
        message: str,
        *,
        location: str = "",
        evidence: dict[str, Any] | None = None,
        suggestions: list[str] | None = None,
        severity: Severity | str | None = None,
        title: str = "",
    ) -> Finding:
        finding = Finding(
            code=code,
            message=message,
            location=location,
            evidence=evidence or {},
            suggestions=list(suggestions or []),
            severity=Severity(severity) if severity else None,
            title=title,
        )
        self.findings.append(finding)
        return finding

    def has(self, code: str) -> bool:
        return any(f.code == code for f in self.findings)

    # ----- copies -------------------------------------------------------------------------
    def fresh_model(self) -> nn.Module:
        """A new copy of the user's model as it was when the check started."""
        return copy_model(self._snapshot)

    def optimizer_for(self, model: nn.Module, **overrides: Any) -> torch.optim.Optimizer:
        """A fresh optimizer for ``model`` (a copy), built like the user's; ``overrides`` e.g. ``lr=1e-2``."""
        return optimizer_for(self.setup.optimizer, self.setup.model, model, **overrides)

    @property
    def device(self) -> torch.device:
        for t in list(self._snapshot.parameters()) + list(self._snapshot.buffers()):
            if t.device.type != "meta":
                return t.device
        return torch.device("cpu")

    @property
    def target_device(self) -> torch.device:
        """The device training is meant for (``Setup.device``; by default where the model is). Memory
        questions are answered for it; it need not be on this machine."""
        return torch.device(self.setup.device) if self.setup.device else self.device

    # ----- data and steps -------------------------------------------------------------------
    def batches(self, limit: int | None = None, split: str = "train"):
        source = self.train if split == "train" else self.val
        if source is None:
            return iter(())
        return (D.to_device(b, self.device) for b in source.batches(limit=limit))

    def first_batch(self) -> Any:
        return self.measure("first_batch", lambda: D.to_device(self.train.first(), self.device))

    def pair(self, batch: Any) -> tuple[Any, Any] | None:
        """``(inputs, targets)`` of a batch when there is no custom ``step``; otherwise None."""
        return None if self.setup.step is not None else D.split_batch(batch)

    def forward(self, model: nn.Module, inputs: Any) -> Any:
        return D.call_model(model, inputs)

    def loss_of(self, model: nn.Module, batch: Any) -> tuple[torch.Tensor, Any]:
        """The scalar loss of one batch and the model's outputs (None when a custom ``step`` is used)."""
        if self.setup.step is not None:
            return self.setup.step(model, batch), None
        pair = D.split_batch(batch)
        if pair is None:
            raise SkipCheck("batches are not (inputs, targets) pairs; give Setup(step=...) for other forms")
        inputs, targets = pair
        outputs = self.forward(model, inputs)
        return self.setup.loss_fn(outputs, targets), outputs

    def train_step(self, model: nn.Module, optimizer: torch.optim.Optimizer, batch: Any) -> float:
        """One ordinary training step (zero_grad, loss, backward, step); returns the loss."""
        optimizer.zero_grad(set_to_none=True)
        loss, _ = self.loss_of(model, batch)
        loss.backward()
        optimizer.step()
        return float(loss.detach())

    # ----- shared measurements ----------------------------------------------------------------
    def measure(self, key: str, compute: Callable[[], Any]) -> Any:
        """Compute a measurement once per run; later callers get the cached value."""
        if key not in self._measurements:
            self._measurements[key] = compute()
        return self._measurements[key]

    def measure_or_skip(self, key: str, compute: Callable[[], Any]) -> Any:
        """``measure``, for a measurement that returns a string (the reason) when it cannot be made: every
        check that reads it is skipped with that same reason."""
        result = self.measure(key, compute)
        if isinstance(result, str):
            raise SkipCheck(result)
        return result

    @property
    def task(self) -> TaskInfo:
        def compute() -> TaskInfo:
            batch = self.first_batch()
            pair = self.pair(batch)
            if pair is None:
                return TaskInfo(self.setup.task if self.setup.task != "auto" else "unknown")
            inputs, targets = pair
            model = self.fresh_model().eval()
            with torch.no_grad():
                try:
                    outputs = self.forward(model, inputs)
                except Exception:
                    outputs = None
            return infer_task(self.setup.task, self.setup.loss_fn, targets, outputs)

        return self.measure("task", compute)
