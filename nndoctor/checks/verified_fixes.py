"""Verified fixes: for a finding whose fix is mechanical (``nndoctor.fixes``), the single-batch experiment
is run before and after the fix and both curves are attached to the finding (``evidence.verified_fix``),
with a sentence when the fix clearly helps.
"""
from __future__ import annotations

from typing import Any

from nndoctor import fixes
from nndoctor.catalogue import Severity
from nndoctor.checks.overfit_experiment import (DOWNSAMPLE, MAX_STEPS, STEP, UNSTABLE, Experiment, experiment,
                                                outcome_words)
from nndoctor.context import Context
from nndoctor.findings import Finding
from nndoctor.probes import curve
from nndoctor.probes.single_batch import OneBatch

CLEARLY_BETTER = 0.5  # a fix counts when it halves the final loss, or converges where the other did not
FASTER = 0.7  # or converges in at most 70% of the steps


def verify_fixes(ctx: Context, findings: list[Finding]) -> None:
    """For each finding with a mechanical fix (``nndoctor.fixes``), run the single-batch experiment
    with and without it and attach both curves to the finding."""
    for finding in findings:
        trial = fix_trial(ctx, finding) if "verified_fix" not in finding.evidence else None
        if trial is None:
            continue
        exp = experiment(ctx)
        if exp.time_left() <= 0:
            break
        verify_fix(exp, finding, trial)


def fix_trial(ctx: Context, finding: Finding) -> fixes.FixTrial | None:
    """The mechanical fix of an error or warning, if it has one that fits this model (OFB findings
    are confirmed by their own experiments)."""
    if finding.code.startswith("OFB") or finding.severity == Severity.INFO:
        return None
    try:
        return fixes.trial_for(ctx, finding)
    except Exception:  # noqa: BLE001 - the fix does not apply to this model; the finding stands as it is
        return None


def verify_fix(exp: Experiment, finding: Finding, trial: fixes.FixTrial) -> None:
    base = exp.baseline
    steps = min(MAX_STEPS, max(60, 2 * (base.converged_at or exp.baseline_steps)))
    exp.ctx.progress(f"{STEP}: verifying the fix of {finding.code}")
    try:
        before = exp.run(trial.before or base.variant, steps, stop_early=False)
        after = exp.run(trial.after, steps, stop_early=False)
    except Exception:  # noqa: BLE001 - the change does not apply to this model (e.g. a module it cannot replace)
        return
    result = before_after(before, after, trial.description, steps)
    finding.evidence["verified_fix"] = result  # also when the fix made no clear difference on one batch
    if not result["verified"]:
        return
    finding.message += (f" Verified on a copy (one batch, {min(before.steps, after.steps)} steps): before: "
                        f"{outcome_words(before, steps)}; {trial.description}: {outcome_words(after, steps)}.")
    if trial.before is not None:
        exp.keep_curve(f"{finding.code} before: {trial.before.label}", before)
    exp.keep_curve(f"{finding.code} fix: {trial.description}", after)


def before_after(before: OneBatch, after: OneBatch, description: str, steps: int | None = None) -> dict[str, Any]:
    """Did ``after`` do clearly better than ``before`` (over their first ``steps`` steps; default all)?
    Better: it reaches the goal where ``before`` does not, or in FASTER of its steps; or it ends at
    CLEARLY_BETTER of ``before``'s final value (or finite where ``before`` blew up) with no more errors."""
    steps = steps or max(before.steps, after.steps)
    b, a = before.measure[:steps], after.measure[:steps]
    verified = False
    if not after.finished and a and b:
        b_goal = before.converged_at if before.converged_at is not None and before.converged_at <= steps else None
        a_goal = after.converged_at if after.converged_at is not None and after.converged_at <= steps else None
        b_shape, a_shape = curve.describe(b), curve.describe(a)
        if a_goal is not None:
            verified = b_goal is None or a_goal <= FASTER * b_goal
        elif a_shape.kind not in UNSTABLE and b_shape.end > 0 and a_shape.end <= CLEARLY_BETTER * b_shape.end:
            more_errors = bool(after.error and before.error) and after.error[-1] > before.error[min(steps, len(before.error)) - 1]
            verified = not more_errors
    return {"fix": description, "verified": verified,
            "before": {**before.summary(), "curve": curve.downsample(before.loss[:steps], DOWNSAMPLE)[1]},
            "after": {**after.summary(), "curve": curve.downsample(after.loss[:steps], DOWNSAMPLE)[1]}}
