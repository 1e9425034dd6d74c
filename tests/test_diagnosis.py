"""Differential diagnosis (checks/diagnosis.py): for each cause the check side confirms, the planted bug's
finding carries it (evidence.cause, a verified fix with before/after numbers, severity error) and the
clean twin, differing only by the fix, gets no finding with that cause and no warning or error."""
from __future__ import annotations

import pytest

from cases.diagnosis_setups import CASES, CAUSES
from cases.ofb_cases import CASES as OFB_CASES
from helpers import run_checked

BY_NAME = {c.name: c for c in CASES}


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


def _report(build, select=("OFB",)):
    return run_checked(build(), select=select, budget=None)  # no clock: the decisions, not the time


@pytest.mark.parametrize("name", sorted(CAUSES))
def test_planted_cause_is_confirmed(name):
    case = BY_NAME[name]
    report = _report(case.build, case.select)
    found = [f for f in report.findings if f.code == case.codes[0]]
    assert found, f"{name}: {[(f.code, f.message) for f in report.findings]}"
    f = found[0]
    assert f.evidence.get("cause") == CAUSES[name], f.message
    assert f.severity.value == "error"
    fix = f.evidence["verified_fix"]
    assert fix["before"]["steps"] and fix["after"]["steps"] and "->" in fix["summary"]


@pytest.mark.parametrize("name", sorted(CAUSES))
def test_clean_twin_has_no_cause_and_no_warning(name):
    case = BY_NAME[name]
    report = _report(case.twin, case.select)
    assert not [f for f in report.findings if f.evidence.get("cause") == CAUSES[name]]
    loud = [(f.code, f.message) for f in report.findings if f.severity.value in ("error", "warning")]
    assert loud == []


@pytest.mark.parametrize("name,cause", [("optimizer-maximize-true", "optimizer"),
                                        ("log-likelihood-minimised-as-loss", "loss")])
def test_flipped_direction_names_its_cause(name, cause):
    case = next(c for c in OFB_CASES if c.name == name)
    report = _report(case.build)
    assert [f.evidence.get("cause") for f in report.findings if f.code == "OFB001"] == [cause]


def test_no_symptom_no_diagnosis():
    """A model that overfits its batch: the diagnosis never runs (no intervention trained)."""
    report = _report(BY_NAME["diagnosis-width-1-bottleneck"].twin)
    assert [f.code for f in report.findings] == ["OFB000"]
    assert "tried" not in report.findings[0].evidence


def test_ruled_out_lists_each_change_with_numbers(monkeypatch):
    """When no change removes the symptom, the finding says what was ruled out, with numbers."""
    from nndoctor.checks import diagnosis

    monkeypatch.setattr(diagnosis, "INTERVENTIONS", [i for i in diagnosis.INTERVENTIONS if i.cause != "initialisation"])
    report = _report(BY_NAME["diagnosis-all-zero-init"].build)
    f = next(f for f in report.findings if f.code == "OFB004")
    assert "cause" not in f.evidence and f.severity.value != "error"
    assert "Ruled out" in f.message and f.evidence["tried"]
    assert all("before" in t and "after" in t for t in f.evidence["tried"])


def test_below_baseline_carries_the_confirmed_cause():
    """CMP001 on a model below the baselines names the cause the one-batch diagnosis confirmed."""
    report = run_checked(BY_NAME["diagnosis-adam-lr-1e-5-regression"].build(), select=("RUN", "OFB", "CMP001"),
                         budget=None)
    cmp = [f for f in report.findings if f.code == "CMP001" and f.severity.value == "error"]
    assert cmp and cmp[0].evidence["cause"] == "learning-rate" and "verified_fix" in cmp[0].evidence
