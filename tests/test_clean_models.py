"""The correct-model suite: the whole playbook must report no error and no warning on any of them."""
from __future__ import annotations

import pytest

from cases.clean_models import CLEAN
from helpers import clean_report


@pytest.mark.parametrize("name", sorted(CLEAN))
def test_clean_model_has_no_error_and_no_warning(name):
    report = clean_report(name)
    loud = [(f.code, f.location, f.message) for f in report.findings if f.severity.value in ("error", "warning")]
    assert loud == [], f"false alarms on {name}: {loud}"


@pytest.mark.parametrize("name", sorted(CLEAN))
def test_clean_model_runs_one_step(name):
    report = clean_report(name)
    step1 = [c for c in report.checks if c.name == "one-training-step"]
    assert step1 and step1[0].status == "passed"
