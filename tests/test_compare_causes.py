"""Causes confirmed beyond one batch (checks/compare_causes.py for CMP001/CMP002; DAT004 for labels): the
planted bug's finding carries the cause (evidence.cause, a verified fix with before/after, severity error);
the clean twin, differing only by the fix, has no finding with that cause and no warning or error."""
from __future__ import annotations

import pytest
from cases.compare_cause_setups import CAUSES, batchnorm_batch_2, misaligned_labels
from helpers import run_checked


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


def _report(setup, select):
    return run_checked(setup, select=select, budget=None)  # no clock: the decisions, not the time


@pytest.mark.parametrize("name", sorted(CAUSES))
def test_planted_cause_is_confirmed(name):
    planted, _, cause, code, select = CAUSES[name]
    report = _report(planted(), select)
    found = [f for f in report.findings if f.code == code]
    assert found, f"{name}: {[(f.code, f.message) for f in report.findings]}"
    f = found[0]
    assert f.evidence.get("cause") == cause, f.message
    assert f.severity.value == "error"
    fix = f.evidence["verified_fix"]
    assert fix["before"] and fix["after"] and "->" in fix["summary"], fix
    assert f"Cause: {cause}." in f.message


@pytest.mark.parametrize("name", sorted(CAUSES))
def test_clean_twin_has_no_cause_and_no_warning(name):
    _, twin, cause, _, select = CAUSES[name]
    report = _report(twin(), select)
    assert not [f for f in report.findings if f.evidence.get("cause") == cause]
    loud = [(f.code, f.message) for f in report.findings if f.severity.value in ("error", "warning")]
    assert loud == []


def test_longer_training_at_the_same_batch_rules_out_batch_size():
    """Batch-norm over 2 samples learns slower, but 4x as many steps at batch 2 also beat the baselines: the
    copy was short, so no finding blames the batch size."""
    report = _report(batchnorm_batch_2(), ("CMP",))
    assert not [f for f in report.findings if f.evidence.get("cause") == "batch-size"]
    assert not [f for f in report.findings if f.severity.value == "error"]


def test_labels_broken_in_both_splits_are_not_confirmed():
    """When the validation pairs carry no signal either, misaligned pairs cannot be told from inputs without
    signal: DAT004 stays a warning without a cause, and says why."""
    report = _report(misaligned_labels(True, shuffled_val=True), ("DAT004",))
    f = report.by_code("DAT004")[0]
    assert "cause" not in f.evidence and f.severity.value == "warning"
    assert "validation pairs show no clear signal either" in f.message
