"""Every planted-bug case produces its codes (at its location); every clean twin stays silent on them."""
from __future__ import annotations

import pytest

from cases import all_cases
from helpers import run_checked

CASES = all_cases()


def _run(build, case):
    return run_checked(build(), select=list(case.select) if case.select else None, budget=case.budget,
                       **case.check_kwargs)


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_planted_bug_is_found(case):
    report = _run(case.build, case)
    missing = set(case.codes) - report.codes()
    assert not missing, f"expected {missing}; got {[(f.code, f.message) for f in report.findings]}"
    if case.location:
        first = report.by_code(case.codes[0])[0]
        assert case.location in first.location, f"location {first.location!r} lacks {case.location!r}"


@pytest.mark.parametrize("case", [c for c in CASES if c.twin], ids=[c.name for c in CASES if c.twin])
def test_clean_twin_is_silent(case):
    report = _run(case.twin, case)
    loud = set(case.codes) & report.codes()
    assert not loud, f"clean twin reported {[(f.code, f.message) for f in report.findings if f.code in loud]}"
