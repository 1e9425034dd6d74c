"""Step 3, "overfit a single batch": a model that cannot drive its error on one fixed batch to (near)
zero has a bug.

A copy trains with the user's optimizer on the first batch (at most MAX_SAMPLES samples) until its task
error reaches the goal, for at most MAX_STEPS steps and a share of the time budget. Its curve is read
(probes/curve.py) and the reading is confirmed by small experiments before anything is said:
  - OFB001 error goes up: one optimizer step from the start climbs the task loss, while a step along
    the task loss's negative gradient lowers it (a flipped sign in the loss or in the optimizer);
  - OFB002 explodes / OFB003 oscillates: the learning rate 10x and 100x lower (and the range test's
    suggestion) are trained to the goal; one that gets there and stays says it is the learning rate,
    none says numerics (the NUM findings). A loss that is NaN/Inf before any update is never the rate;
  - OFB004 plateaus or falls too slowly: the differential diagnosis (checks/diagnosis.py) tries one
    change at a time (learning rate over several decades, initialisation, output activation, scaling,
    regularisation, width, earlier findings' fixes); the one that removes it is the cause (error).
The learning-rate range test also runs when the model overfits (OFB000 reports the range). Fixes of
any finding that has a mechanical one (``nndoctor.fixes``) are verified the same way: before and after.
"""
from __future__ import annotations


from nndoctor import fixes
from nndoctor.checks import SkipCheck, check
from nndoctor.checks.diagnosis import Diagnosis, diagnose
from nndoctor.checks.lr_range import LrRange, lr_range
from nndoctor.checks.overfit_experiment import (LOSS_OK, MIN_STEPS, UNSTABLE, Experiment, error_ok, error_words,
                                                experiment, goal_words, loss_words, num, run_evidence,
                                                series_words, signed)
from nndoctor.checks.verified_fixes import before_after, verify_fix, verify_fixes
from nndoctor.context import Context
from nndoctor.probes import curve
from nndoctor.probes.repeat_read import read_twice
from nndoctor.probes.single_batch import OneBatch, Variant, descent_check, lr_variant

FAR = 4.0  # a slow descent is a symptom while the error is still this many times the goal


# ----- the check --------------------------------------------------------------------------------------
@check("overfit-one-batch", step="overfit", codes=("OFB000", "OFB001", "OFB002", "OFB003", "OFB004"))
def overfit_one_batch(ctx: Context) -> None:
    """Train a copy on one batch, read the curve, confirm the reading, verify the fixes."""
    exp = experiment(ctx)
    base = exp.baseline
    shape = curve.describe(base.measure[:exp.baseline_steps])
    if base.converged:
        _overfits(ctx, exp)
    elif shape.first_non_finite == 0:
        _non_finite_from_the_start(ctx, exp)
    elif base.status == "crashed" and base.steps < MIN_STEPS:
        raise SkipCheck(f"the single-batch run crashed after {base.steps} steps: {base.failure}")
    elif not _goes_up(ctx, exp, shape):
        if shape.kind == "explodes":
            _too_fast(ctx, exp, shape, "OFB002")
        elif shape.kind in UNSTABLE:
            _too_fast(ctx, exp, shape, "OFB003")
        elif base.steps < MIN_STEPS:
            raise SkipCheck(f"only {base.steps} steps fitted in the time budget ({base.seconds:.1f} s); "
                            "give a larger --budget to overfit one batch")
        else:
            _stalls(ctx, exp, shape)
    verify_fixes(ctx, list(ctx.findings))
    exp.release(keep=base)  # the gradient-flow check still reads the baseline's model and optimizer


def _overfits(ctx: Context, exp: Experiment) -> None:
    base = exp.baseline
    sweep = lr_range(exp)
    message = (f"The model overfits {exp.batch_words}: {goal_words(exp)} after "
               f"{base.converged_at} steps ({loss_words(base, base.converged_at)}).")
    evidence = run_evidence(exp)
    if sweep is not None:
        message += " " + sweep.sentence()
        evidence["lr_range"] = sweep.evidence()
    elif ctx.mode == "quick":
        message += " The learning-rate range test runs without --quick."
    ctx.emit("OFB000", message, location="model", evidence=evidence)


def _goes_up(ctx: Context, exp: Experiment, shape: curve.Shape) -> bool:
    """OFB001 when one optimizer step climbs the task loss (confirmed by the curve rising): True if emitted."""
    base = exp.baseline
    rose = shape.end > shape.start or (bool(base.error) and base.error[exp.baseline_steps - 1] > base.error[0])
    if not rose:
        return False
    try:
        d = descent_check(exp.trainer(Variant(label="one step")))
    except Exception:  # noqa: BLE001 - the user's code failed on a second pass: no confirmation
        return False
    if d is None:
        return False
    if d.cos_update_task is not None:  # to first order, and as a finite step
        uphill = d.cos_update_task > 0 and (d.task_change is None or d.task_change > 0)
    else:
        uphill = d.cos_update_loss > 0 and d.loss_change > 0
    if not uphill:
        return False
    evidence = run_evidence(exp)
    evidence["directions"] = d.as_evidence()
    loss_flipped = d.cos_loss_task is not None and d.cos_loss_task < 0
    measured = ("the task loss" if base.meter is not None else "the loss")
    if loss_flipped:
        location = "loss_fn" if ctx.setup.step is None else "step"
        cause = ("the loss the optimizer minimises falls where the task's error rises: its gradient points against "
                 f"the task's (cosine {d.cos_loss_task:.2f}): a flipped sign in the loss, e.g. `-criterion(...)` or a "
                 "score maximised as if it were a loss")
        fix = (Variant(label="loss sign flipped", loss_fn=lambda out, y, f=ctx.setup.loss_fn: -f(out, y))
               if ctx.setup.step is None else None)
        fix_words = "with the loss's sign flipped"
        suggestions = ["Minimise the loss itself: remove the minus sign (or the `1 -`/reciprocal) in front of the "
                       "criterion, or negate a score you mean to maximise."]
    else:
        location = "optimizer"
        groups = base.optimizer.param_groups
        maximize = any(g.get("maximize") for g in groups)
        negative = any(isinstance(g.get("lr"), (int, float)) and g["lr"] < 0 for g in groups)
        what = ("maximize=True" if maximize else "a negative learning rate" if negative
                else "an update that adds the gradient")
        cause = (f"the optimizer's step climbs its own loss (cosine of the update with the gradient "
                 f"{d.cos_update_loss:.2f}): {what}")
        fix = (Variant(label="maximize=False", hyper={"maximize": False}) if maximize
               else Variant(label="lr sign flipped", lr_scale=-1.0) if negative else None)
        fix_words = "with maximize=False" if maximize else "with the learning rate's sign flipped"
        suggestions = ["Remove `maximize=True` from the optimizer." if maximize else
                       "Use a positive learning rate." if negative else
                       "A hand-written update must subtract the gradient: `p -= lr * p.grad`."]
    steps = exp.baseline_steps
    message = (f"While overfitting {exp.batch_words}, {measured} rises: "
               f"{series_words(base.measure[:steps])} in {steps} steps ({error_words(base, steps)}). Cause: {cause}. "
               f"Confirmed from the start weights: one optimizer step changes {measured} by "
               f"{signed(d.task_change if d.task_change is not None else d.loss_change)}")
    if d.descent_change is not None:
        message += f", a step of the same length down its gradient by {signed(d.descent_change)}"
    message += "."
    evidence["cause"] = "loss" if loss_flipped else "optimizer"  # confirmed by the directions above
    finding = ctx.emit("OFB001", message, location=location, evidence=evidence, suggestions=suggestions)
    if fix is not None:
        verify_fix(exp, finding, fixes.FixTrial(fix_words, fix))
    return True


def _non_finite_from_the_start(ctx: Context, exp: Experiment) -> None:
    """OFB002 without a learning rate to blame: the first loss, before any update, is already NaN/Inf."""
    base = exp.baseline
    causes = sorted({f.code for f in ctx.findings if f.code in ("DAT001", "DAT002") or f.code.startswith("NUM")})
    message = (f"While overfitting {exp.batch_words}, the loss is {num(base.loss[0])} at the first "
               "step, before any update: no learning rate can help; the data or the forward pass produce it.")
    if causes:
        message += f" Found: {', '.join(causes)}."
    ctx.emit("OFB002", message, location="model", evidence=run_evidence(exp),
             suggestions=["Look for NaN/Inf in the inputs and targets (DAT002) and for the first module that makes "
                          "them (NUM001)."])


def _too_fast(ctx: Context, exp: Experiment, shape: curve.Shape, code: str) -> None:
    """OFB002/OFB003: confirm that a lower learning rate reaches the goal and stays (then it is the rate)."""
    base = exp.baseline
    steps = exp.baseline_steps
    if code == "OFB002":
        what = (f"becomes NaN/Inf at step {shape.first_non_finite}" if shape.first_non_finite is not None
                else f"explodes to {num(shape.max)} ({shape.peak_ratio:.3g}x its start {num(shape.start)})")
    elif shape.kind == "rises":
        what = f"rises from {num(shape.start)} to {num(shape.end)} although each step starts downhill"
    else:
        what = (f"oscillates: it fell and climbed back by {shape.rebound:.0%} of its start, ending at "
                f"{num(shape.end)} (from {num(shape.start)})")
    measured = "the task loss" if base.meter is not None else "the loss"
    message = f"While overfitting {exp.batch_words}, {measured} {what} within {steps} steps."
    evidence = run_evidence(exp)
    suggestions: list[str] = []
    sweep = lr_range(exp)
    if sweep is not None:
        evidence["lr_range"] = sweep.evidence()
    lower = _lower_rate_that_converges(exp, sweep)
    # not the rate alone: the other changes, one at a time (dropout 0.9 under momentum oscillates at any rate)
    d = diagnose(exp, skip=("learning-rate",)) if lower is None else Diagnosis()
    if d.cause is not None:
        message += d.words()
        suggestions.append(d.advice)
        evidence.update(cause=d.cause, verified_fix=d.verified_fix, tried=d.tried)
        exp.keep_curve(f"confirmation: {d.change}", d.run)
    elif lower is not None:
        k, c = lower
        message += (f" Confirmed: it is the learning rate. With lr {num(c.lr)} ({10 ** -k:g}x lower) the copy reaches "
                    f"the goal in {c.converged_at} steps and stays there.")
        if sweep is not None:
            message += " " + sweep.sentence()
        suggestions.append(f"Lower the learning rate to about {num(c.lr)} (or add warm-up / gradient clipping).")
        evidence["verified_fix"] = {**before_after(base, c, f"with lr {num(c.lr)}"),
                                    "summary": f"lr {num(base.lr)} -> {num(c.lr)}: goal reached in {c.converged_at} steps"}
        evidence["cause"] = "learning-rate"
        exp.keep_curve(f"confirmation: lr {num(c.lr)}", c)
    elif code == "OFB002":
        lowest = min(exp.lower_rates_tried, default=0)
        tried = f"even with lr {num(base.lr * 10.0**lowest)} ({10 ** -lowest:g}x lower)" if lowest < 0 else ""
        message += (f" Not the learning rate alone: {tried or 'a lower learning rate could not be tried'} it does not "
                    "converge. Look for a numerical problem: the NUM findings name the first NaN/Inf.")
        numerics = sorted({f.code for f in ctx.findings if f.code.startswith("NUM") or f.code in ("DAT001", "DAT002")})
        if numerics:
            message += f" Found: {', '.join(numerics)}."
        suggestions.append("Check for log/exp/division on unbounded values, and for unnormalised inputs (DAT001).")
    else:
        message += " A learning rate 10x or 100x lower did not settle it either."
    if d.cause is None and d.ruled_out:
        message += d.words()
        evidence["tried"] = d.tried
    if code == "OFB003":
        reread = read_twice(exp.ctx.train)
        if reread is not None:
            evidence["same_batch_twice"] = {"read": reread.how, "inputs_differ": reread.inputs_differ,
                                            "targets_differ": reread.targets_differ}
            if reread.targets_differ:
                message += (f" Reading the same samples twice ({reread.how}) gave different targets: labels change "
                            "between reads, so no run ever sees a fixed batch.")
                suggestions.append("Make the labels a fixed property of each sample (no random choice in __getitem__).")
            elif reread.inputs_differ:
                message += (f" Reading the same samples twice ({reread.how}) gave different inputs (random "
                            "augmentation): a fixed batch is a moving target when read through the dataset.")
    ctx.emit(code, message, location="optimizer" if lower is not None else "model", evidence=evidence,
             suggestions=suggestions, severity="error" if lower is not None or d.cause is not None else None)


def _lower_rate_that_converges(exp: Experiment, sweep: LrRange | None) -> tuple[int, OneBatch] | None:
    """The user's rate 10x, 100x lower (and the range test's suggestion, if lower still), each trained
    to the goal until one gets there: (its exponent, its run)."""
    if exp.baseline.lr is None or not exp.baseline.lr > 0:
        return None
    exponents = {-1, -2} | ({sweep.suggested} if sweep is not None and sweep.suggested < 0 else set())
    for k in sorted(exponents, reverse=True):
        if exp.time_left() <= 0:
            break
        trainer = exp.run(lr_variant(exp.baseline.lr, k))
        exp.lower_rates_tried.append(k)
        if trainer.converged:
            return k, trainer
    return None


def _far_from_goal(exp: Experiment) -> bool:
    """After the baseline's run, is its error (or loss) still more than FAR times the goal?"""
    base = exp.baseline
    if base.error:
        return base.error[exp.baseline_steps - 1] > FAR * error_ok(exp.kind)
    return base.loss[exp.baseline_steps - 1] > FAR * LOSS_OK * abs(base.loss[0])


def _stalls(ctx: Context, exp: Experiment, shape: curve.Shape) -> None:
    """OFB004: try each change that could unblock a plateau (or a slow descent) and say which does."""
    base = exp.baseline
    steps = exp.baseline_steps
    plateau = shape.kind == "plateaus"
    measured = "the task loss" if base.meter is not None else "the loss"
    words = (f"plateaus at {num(shape.end)} (from {num(shape.start)})" if plateau
             else f"is still falling slowly ({num(shape.start)} to {num(shape.end)})")
    message = f"The model does not overfit {exp.batch_words}: after {steps} steps {measured} {words}"
    message += f"; {error_words(base, steps)}." if base.meter is not None else "."
    evidence = run_evidence(exp)
    sweep = lr_range(exp)
    if sweep is not None:
        evidence["lr_range"] = sweep.evidence()
    # A descent that is nearly there (a correct model a little slower than MAX_STEPS) is no symptom.
    d = diagnose(exp) if plateau or _far_from_goal(exp) else Diagnosis()
    evidence["tried"] = d.tried
    message += d.words()
    suggestions = [d.advice] if d.cause else []
    if d.cause is not None:
        evidence["cause"], evidence["verified_fix"] = d.cause, d.verified_fix
        exp.keep_curve(f"confirmation: {d.change}", d.run)
    elif d.ruled_out:
        message += " Look at the loss and the data (LOS, DAT findings) and at gradient flow (GRD findings)."
    related = sorted({f.code for f in ctx.findings if f.code.startswith(("LOS", "DAT", "NUM", "MOD"))})
    if related:
        message += f" Earlier findings that can cause this: {', '.join(related)}."
    # a confirmed cause is a bug; slow but still falling without one is a measurement, not a bug
    severity = "error" if d.cause is not None else None if plateau else "info"
    ctx.emit("OFB004", message, location="optimizer" if d.cause == "learning-rate" else "model", evidence=evidence,
             suggestions=suggestions, severity=severity)
