"""Checks: each reads measurements and emits findings. A check is registered with its step and codes.

To add one: write a function ``def my_check(ctx: Context) -> None`` in the module of its family
(the code prefix names it: LOS -> checks/loss.py; a large family is split by concern, DAT ->
checks/data_values.py, data_targets.py, data_splits.py, data_order.py) and decorate it with ``@check(...)``.
A check emits through ``ctx.emit(code, ...)``; it may raise ``SkipCheck("why")``.
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Callable

from nndoctor.catalogue import STEPS
from nndoctor.context import Context, SkipCheck

__all__ = ["check", "CheckSpec", "all_checks", "SkipCheck", "Context"]

# Modules holding checks, imported in this order; within a step, checks run in registration order.
MODULES = ["run", "memory", "shapes", "data_values", "data_targets", "data_splits", "data_order", "loss", "initial_loss",
           "modes", "numerics", "overfit", "overfit_pipeline", "gradients", "compare", "known_results"]


@dataclass(frozen=True)
class CheckSpec:
    name: str
    step: str  # a key of catalogue.STEPS
    codes: tuple[str, ...]
    func: Callable[[Context], None]
    needs_run: bool  # skipped when step 1 could not run one training step
    order: int
    prerequisite: bool  # runs even when none of its codes is selected: later checks need what it measures
    uses_model: bool = True  # runs the model (False: reads the data alone)


_REGISTRY: list[CheckSpec] = []


def check(
    name: str,
    *,
    step: str,
    codes: tuple[str, ...] | list[str],
    needs_run: bool = True,
    prerequisite: bool = False,
    uses_model: bool = True,
):
    """Register a check function under ``name`` for playbook ``step``, emitting ``codes``."""
    if step not in STEPS:
        raise ValueError(f"unknown step {step!r}")

    def register(func: Callable[[Context], None]) -> Callable[[Context], None]:
        if any(spec.name == name for spec in _REGISTRY):
            raise ValueError(f"check {name!r} registered twice")
        _REGISTRY.append(CheckSpec(name, step, tuple(codes), func, needs_run, len(_REGISTRY), prerequisite,
                                   uses_model))
        return func

    return register


def all_checks() -> list[CheckSpec]:
    """Every registered check, in playbook order (step, then registration)."""
    for module in MODULES:
        try:
            importlib.import_module(f"{__name__}.{module}")
        except ModuleNotFoundError as exc:
            if exc.name != f"{__name__}.{module}":  # a missing family module is fine; a broken import is not
                raise
    steps = list(STEPS)
    return sorted(_REGISTRY, key=lambda s: (steps.index(s.step), s.order))
