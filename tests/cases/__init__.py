"""Test fixtures: planted-bug cases and their clean twins, and the suite of correct models.

Each family has a module ``<family>_cases.py`` with a ``CASES`` list of ``Case``. A case builds a
``Setup`` with a planted bug; its twin differs only by the fix. ``tests/test_catalogue.py`` walks the
catalogue and fails on a code without a planted case and a clean twin.
"""
from __future__ import annotations

import importlib
import pkgutil
from dataclasses import dataclass, field
from typing import Any, Callable


@dataclass(frozen=True)
class Case:
    name: str
    build: Callable[[], Any]  # -> nndoctor.Setup
    codes: tuple[str, ...]  # codes the planted bug must produce
    twin: Callable[[], Any] | None = None  # the same setup with the fix: must stay silent on ``codes``
    location: str | None = None  # a substring the first finding of codes[0] must have as location
    select: tuple[str, ...] | None = None  # restrict the playbook to these codes/families (speed)
    budget: float = 60.0
    check_kwargs: dict = field(default_factory=dict)


def all_cases() -> list[Case]:
    cases: list[Case] = []
    for info in pkgutil.iter_modules(__path__):
        if info.name.endswith("_cases"):
            cases.extend(importlib.import_module(f"{__name__}.{info.name}").CASES)
    return cases
