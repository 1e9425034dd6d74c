"""What the user hands in: ``Setup`` and ``KnownResult``, validated on construction."""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Callable

import torch
from torch import nn

TASKS = ("auto", "classification", "binary", "multilabel", "regression")
SOURCES = ("official-similar", "official-benchmark", "unofficial", "paper", "benchmark", "similar-model")


class SetupError(ValueError):
    """The user's Setup (or another input to nndoctor) is invalid; the message says how to fix it."""


@dataclass
class KnownResult:
    """A published or official result to compare against. ``source`` ranks how much to trust it."""

    metric: str
    value: float
    source: str
    note: str = ""
    higher_is_better: bool | None = None  # None: guessed from the metric's name

    def __post_init__(self) -> None:
        if self.source not in SOURCES:
            raise SetupError(
                f"KnownResult source {self.source!r} is not one of {', '.join(SOURCES)} "
                "(most trusted first)"
            )
        try:
            self.value = float(self.value)
        except (TypeError, ValueError):
            raise SetupError(f"KnownResult value must be a number, got {self.value!r}") from None
        if not isinstance(self.metric, str) or not self.metric:
            raise SetupError("KnownResult metric must be a non-empty string such as 'accuracy'")
        if self.higher_is_better is None:
            lower = ("loss", "error", "mse", "mae", "rmse", "perplexity", "wer", "cer")
            self.higher_is_better = not any(w in self.metric.lower() for w in lower)

    @property
    def trust_rank(self) -> int:
        """0 is the most trusted source."""
        return SOURCES.index(self.source)


@dataclass
class Setup:
    """Model, data, loss and optimizer: everything nndoctor needs to run the playbook."""

    model: nn.Module
    train_data: Any
    loss_fn: Callable[[Any, Any], torch.Tensor] | None = None
    optimizer: Any = None
    val_data: Any = None
    step: Callable[[nn.Module, Any], torch.Tensor] | None = None
    batch_size: int = 64
    task: str = "auto"
    metric: Callable[[Any, Any], float] | None = None
    known_results: list[KnownResult] = field(default_factory=list)
    reference_model: nn.Module | None = None
    trained: bool = False
    memory_budget: int | str | None = None
    device: str | None = None  # the device training is meant for (e.g. "cuda"): memory-fit answers for it

    def __post_init__(self) -> None:
        from nndoctor.data import describe_unsupported

        if not isinstance(self.model, nn.Module):
            raise SetupError(
                f"Setup.model must be a torch.nn.Module, got {type(self.model).__name__}"
            )
        if self.train_data is None:
            raise SetupError("Setup.train_data is required (a DataLoader, Dataset, (inputs, targets) or iterable)")
        for name in ("train_data", "val_data"):
            value = getattr(self, name)
            if value is not None:
                problem = describe_unsupported(value)
                if problem:
                    raise SetupError(f"Setup.{name}: {problem}")
        if self.loss_fn is None and self.step is None:
            raise SetupError(
                "Setup needs loss_fn (loss_fn(outputs, targets) -> scalar) or step "
                "(step(model, batch) -> scalar loss)"
            )
        for name in ("loss_fn", "step", "metric"):
            value = getattr(self, name)
            if value is not None and not callable(value):
                raise SetupError(f"Setup.{name} must be callable, got {type(value).__name__}")
        if self.optimizer is not None and not (
            callable(self.optimizer) or isinstance(self.optimizer, torch.optim.Optimizer)
        ):
            raise SetupError(
                "Setup.optimizer must be a factory params -> Optimizer "
                "(e.g. lambda p: torch.optim.Adam(p, lr=1e-3)) or an Optimizer instance"
            )
        if isinstance(self.batch_size, bool) or not isinstance(self.batch_size, int) or self.batch_size < 1:
            raise SetupError(f"Setup.batch_size must be a positive integer, got {self.batch_size!r}")
        if self.task not in TASKS:
            raise SetupError(f"Setup.task must be one of {', '.join(TASKS)}, got {self.task!r}")
        self.known_results = list(self.known_results or [])
        for kr in self.known_results:
            if not isinstance(kr, KnownResult):
                raise SetupError(f"Setup.known_results must hold KnownResult objects, got {type(kr).__name__}")
        if self.reference_model is not None and not isinstance(self.reference_model, nn.Module):
            raise SetupError("Setup.reference_model must be a torch.nn.Module")
        if self.memory_budget is not None:
            self.memory_budget = parse_size(self.memory_budget)
        if self.device is not None:
            try:
                self.device = str(torch.device(self.device))
            except (RuntimeError, TypeError):
                raise SetupError(f"Setup.device must name a torch device such as 'cuda' or 'cpu', got {self.device!r}") from None


_UNITS = {"": 1, "B": 1, "K": 1000, "KB": 1000, "M": 1000**2, "MB": 1000**2, "G": 1000**3, "GB": 1000**3,
          "T": 1000**4, "TB": 1000**4, "KIB": 1024, "MIB": 1024**2, "GIB": 1024**3, "TIB": 1024**4}


def parse_size(value: int | float | str) -> int:
    """``"2GiB"`` -> 2147483648. Accepts bytes as a number, or a number with a unit (KB, MiB, GiB, ...)."""
    if isinstance(value, bool):
        raise SetupError(f"memory size must be bytes or a string like '2GiB', got {value!r}")
    if isinstance(value, (int, float)):
        if value <= 0:
            raise SetupError(f"memory size must be positive, got {value!r}")
        return int(value)
    match = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([A-Za-z]*)\s*", str(value))
    if not match or match.group(2).upper() not in _UNITS:
        raise SetupError(f"memory size {value!r} not understood; use bytes or e.g. '512MiB', '2GiB', '8GB'")
    size = float(match.group(1)) * _UNITS[match.group(2).upper()]
    if size <= 0:
        raise SetupError(f"memory size must be positive, got {value!r}")
    return int(size)
