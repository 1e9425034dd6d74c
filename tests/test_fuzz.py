"""Property-based tests: random small models and data never crash nndoctor, never change the user's
objects, always give a schema-valid report, and stay within the budget.

A fast subset runs in CI; `python -m pytest -m slow tests/test_fuzz.py` runs hundreds of examples, and
`python bench/fuzz_run.py` runs them with counts (examples, internal crashes, state changes).
"""
from __future__ import annotations

import time

import pytest
from hypothesis import HealthCheck, given, settings

from fuzz_models import build, specs
from helpers import run_checked

BUDGET = 8.0


def _property(spec) -> None:
    setup = build(spec)
    started = time.monotonic()
    report = run_checked(setup, budget=BUDGET)  # asserts: no crashed check, state and RNG unchanged, schema
    assert time.monotonic() - started < BUDGET + 15, "the budget was not honoured"
    assert report.checks


_fast = settings(max_examples=6, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
_nightly = settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))


@_fast
@given(specs)
def test_random_models_fast_subset(spec):
    _property(spec)


@pytest.mark.slow
@pytest.mark.timeout(0)  # hundreds of examples: minutes, not the default 10-minute cap
@_nightly
@given(specs)
def test_random_models_nightly(spec):
    _property(spec)
