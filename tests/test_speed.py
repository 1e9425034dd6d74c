"""The playbook's speed decisions (issue 18), asserted as decisions, never as seconds: the copies train on one
torch thread and the user's thread count comes back; --quick leaves out the learning-rate range test but
still finds the planted bug; the default budget is the one --help states."""
from __future__ import annotations

import os

import torch

import nndoctor
from nndoctor.playbook import DEFAULT_BUDGET, MODE_BUDGETS

from cases.clean_models import mlp_digits
from cases.ofb_cases import CASES as OFB_CASES
from helpers import run_checked


def _counting_threads(setup: nndoctor.Setup, seen: list[int]) -> nndoctor.Setup:
    """The same setup, its loss recording torch's thread count each time nndoctor's copies call it."""
    loss = setup.loss_fn

    def counted(out, y):
        seen.append(torch.get_num_threads())
        return loss(out, y)

    setup.loss_fn = counted
    return setup


def test_copies_train_on_one_thread_and_the_users_count_comes_back():
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        seen: list[int] = []
        report = run_checked(_counting_threads(mlp_digits(), seen), select=["RUN", "OFB"])
        ran = {c.name: c.status for c in report.checks}
        assert ran["one-training-step"] == ran["overfit-one-batch"] == "passed"
        assert seen and set(seen) == {1}  # every forward of a copy, step 1 included
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)


def test_quick_leaves_out_the_range_test_and_says_so():
    quick = run_checked(mlp_digits(), mode="quick", select=["OFB000"])
    default = run_checked(mlp_digits(), select=["OFB000"])
    (q,), (d,) = quick.findings, default.findings
    assert "lr_range" not in q.evidence and "range test runs without --quick" in q.message
    assert "lr_range" in d.evidence
    assert q.evidence["converged_at"] == d.evidence["converged_at"]  # the same baseline run, the same verdict


def test_quick_still_confirms_a_planted_bug():
    case = next(c for c in OFB_CASES if "OFB001" in c.codes)  # a flipped sign, confirmed by its own experiment
    report = run_checked(case.build(), mode="quick", select=["OFB"])
    found = [f for f in report.findings if f.code == "OFB001"]
    assert found and found[0].evidence.get("cause") in ("loss", "optimizer")


def test_default_budget_is_the_one_help_states():
    assert MODE_BUDGETS["default"] == DEFAULT_BUDGET
    from nndoctor.cli import build_parser

    help_text = " ".join(build_parser()._subparsers._group_actions[0].choices["check"].format_help().split())
    assert f"default {DEFAULT_BUDGET:g} s" in help_text


def test_a_heavy_step_gets_threads_back_up_to_the_idle_cores(monkeypatch):
    """After a step 1 longer than HEAVY_STEP (here: any), the later steps run with the user's threads where
    cores are idle, and on one thread where the machine is busy."""
    from nndoctor import playbook

    monkeypatch.setattr(playbook, "HEAVY_STEP", 0.0)
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        for idle, later in ((8, 2), (0, 1)):
            monkeypatch.setattr(playbook, "_idle_cores", lambda idle=idle: idle)
            seen: list[int] = []
            run_checked(_counting_threads(mlp_digits(), seen), select=["RUN", "OFB000"])
            assert seen[0] == 1 and seen[-1] == later  # step 1 on one thread; the overfit step as the cores allow
            assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)


def test_idle_cores_are_at_most_the_cores():
    from nndoctor.playbook import _idle_cores

    assert _idle_cores() <= (os.cpu_count() or 1)
