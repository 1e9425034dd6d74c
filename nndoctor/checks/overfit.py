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
  - OFB004 plateaus: a higher learning rate, no weight decay, no dropout, and the mechanical fixes of
    earlier findings are each tried; the message says which unblocks it.
The learning-rate range test also runs when the model overfits (OFB000 reports the range). Fixes of
any finding that has a mechanical one (``nndoctor.fixes``) are verified the same way: before and after.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any

from torch import nn

from nndoctor import data as D
from nndoctor import fixes
from nndoctor.catalogue import Severity
from nndoctor.checks import SkipCheck, check
from nndoctor.context import Context
from nndoctor.findings import Finding
from nndoctor.probes import curve
from nndoctor.probes.grad_stats import GradStats
from nndoctor.probes.repeat_read import read_twice
from nndoctor.probes.single_batch import Trainer, Variant, descent_check, lr_variant

MAX_SAMPLES = 64  # the fixed batch: the first batch, cut to this many samples (speed; still a real batch)
MAX_STEPS = 500  # correct small models reach the goal and stay in 40-340 steps (tests/cases/clean_models.py)
MIN_STEPS = 50  # fewer steps than this (a slow model cut by time) cannot show a plateau
ERROR_OK = 0.02  # classification: at most 2% of labels wrong on the batch counts as overfit
REGRESSION_OK = 0.05  # regression: MSE at most 5% of the targets' variance (R² >= 0.95)
LOSS_OK = 0.05  # without a task error (custom step): the loss at 5% of its start
SHARE, MAX_SECONDS = 0.35, 60.0  # the overfit step's share of the remaining budget, and its cap
BASELINE_SHARE, SWEEP_SHARE = 0.6, 0.3  # of that: the baseline run (the verdict needs it), then of what is left
# for the learning-rate range test; small models use a fraction of these (bench/bench_overfit.py)
SWEEP_STEPS = 30  # steps per learning rate in the range test
MAX_SWEEP_RUNS = 7
MIN_EXPONENT, MAX_EXPONENT = -4, 4  # the range test tries the user's lr times 10**k for k in this range
CLOSE_STEPS = 2.0  # in the range: converges within twice the best's steps
CLOSE_FALL = 0.25  # or (when none converges) falls at least 75% as far as the best
CLEARLY_BETTER = 0.5  # a fix counts when it halves the final loss, or converges where the other did not
FASTER = 0.7  # or converges in at most 70% of the steps
DOWNSAMPLE = 100  # points of a curve kept in evidence
UNSTABLE = ("explodes", "rises", "oscillates")  # curve shapes of a learning rate that is too high
STEP = "3. Overfit a single batch"


# ----- the shared experiment ------------------------------------------------------------------------
@dataclass
class Experiment:
    """The fixed batch, the baseline run (with gradient statistics) and the time left for follow-ups."""

    ctx: Context
    batch: Any
    samples: int
    kind: str
    deadline: float  # time.monotonic() by which every follow-up run must end
    baseline: Trainer
    baseline_steps: int  # steps of the baseline's own run (verifications may extend it later)
    grads: GradStats
    curves: dict[str, Any] = field(default_factory=dict)  # for the HTML report: label -> curve
    sweep: "LrRange | None | str" = "not run"
    runs: dict[str, Trainer] = field(default_factory=dict)  # variant label -> its run, shared by the checks
    lower_rates_tried: list[int] = field(default_factory=list)  # exponents tried to tame an unstable run

    def trainer(self, variant: Variant, **options: Any) -> Trainer:
        """A fresh copy in training for ``variant``."""
        return Trainer(self.ctx, self.batch, variant, kind=self.kind, error_ok=error_ok(self.kind),
                       loss_ok=LOSS_OK, seed=self.ctx.seed, **options)

    def shared(self, variant: Variant, **options: Any) -> Trainer:
        """The run of ``variant`` (by label) that every check continues, created on first use."""
        if variant.label not in self.runs:
            self.runs[variant.label] = self.trainer(variant, **options)
        return self.runs[variant.label]

    def run(self, variant: Variant, steps: int = MAX_STEPS, stop_at_goal: bool = True) -> Trainer:
        """The run of ``variant``, advanced until the goal, ``steps``, or twice the time the baseline
        needed per step (a slow variant must not eat the time of the others)."""
        trainer = self.shared(variant)
        self.ctx.progress(f"{STEP}: {variant.label}")
        per_step = self.baseline.seconds / max(self.baseline_steps, 1)
        trainer.advance(steps, self.until(2 * per_step * max(steps - trainer.steps, 0) + 1.0), stop_at_goal)
        return trainer

    def until(self, seconds: float | None = None) -> float:
        now = time.monotonic()
        return min(self.deadline, now + seconds) if seconds is not None else self.deadline

    def time_left(self) -> float:
        return max(0.0, self.deadline - time.monotonic())

    def release(self, keep: Trainer | None = None) -> None:
        """Free every copy but ``keep`` (memory: a large model is copied once per run)."""
        for trainer in self.runs.values():
            if trainer is not keep:
                trainer.release()
        if keep is None:
            self.grads.release()

    def keep_curve(self, label: str, trainer: Trainer) -> None:
        steps, values = curve.downsample(trainer.loss, DOWNSAMPLE)
        self.curves[label] = {"steps": steps, "loss": values}


def error_ok(kind: str) -> float:
    return REGRESSION_OK if kind == "regression" else ERROR_OK


def experiment(ctx: Context) -> Experiment:
    """Run the baseline once per playbook run; every OFB and GRD check reads it (or the same reason to skip)."""
    return ctx.measure_or_skip("single_batch", lambda: _start(ctx))


def _start(ctx: Context) -> Experiment | str:
    batch = ctx.first_batch()
    samples = D.batch_len(batch)
    if samples > MAX_SAMPLES:
        try:
            batch = D.index(batch, slice(0, MAX_SAMPLES))
            samples = MAX_SAMPLES
        except (IndexError, TypeError, RuntimeError):  # a batch with per-batch (not per-sample) tensors
            pass
    share = min(MAX_SECONDS, SHARE * ctx.budget.remaining())
    now = time.monotonic()
    kind = ctx.task.kind
    baseline = Trainer(ctx, batch, Variant(label="as given"), kind=kind, error_ok=error_ok(kind), loss_ok=LOSS_OK,
                       record_grads=True, seed=ctx.seed)
    ctx.progress(f"{STEP}: training a copy on one batch of {samples} samples")
    baseline.advance(MAX_STEPS, now + BASELINE_SHARE * share)
    if baseline.steps == 0:
        return f"the single-batch run failed at its first step: {baseline.failure or 'no time left'}"
    grads, baseline.stats = baseline.stats, None  # later extensions of the baseline are not measured
    exp = Experiment(ctx, batch, samples, kind, now + share, baseline, baseline.steps, grads)
    exp.runs[baseline.variant.label] = baseline
    exp.keep_curve("baseline (as given)", baseline)
    ctx.extras["overfit"] = {"ylabel": "loss (as optimised)", "curves": exp.curves, "samples": samples}
    return exp


# ----- the learning-rate range test -------------------------------------------------------------------
@dataclass
class LrRange:
    """Runs of SWEEP_STEPS steps at the user's learning rate times 10**k, and what they say."""

    base_lr: float
    runs: dict[int, Trainer]  # exponent k -> run
    ranks: dict[int, tuple]  # exponent -> sort key (lower is better)
    stable: dict[int, bool]
    good: list[int]  # exponents within reach of the best
    suggested: int
    confirmation: Trainer | None = None  # the suggested rate, trained to the goal

    def lr(self, k: int) -> float:
        return self.base_lr * 10.0**k

    def evidence(self) -> dict[str, Any]:
        tried = sorted(self.runs)
        out: dict[str, Any] = {
            "steps_per_rate": SWEEP_STEPS,
            "tried": [{"lr": _g(self.lr(k)), "stable": self.stable[k], **_outcome(self.runs[k], SWEEP_STEPS)}
                      for k in tried],
            "range": [_g(self.lr(min(self.good))), _g(self.lr(max(self.good)))],
            "suggested": _g(self.lr(self.suggested)),
        }
        unstable_above = [k for k in tried if k > max(self.good) and not self.stable[k]]
        if unstable_above:
            out["unstable_from"] = _g(self.lr(min(unstable_above)))
        if self.confirmation is not None:
            out["confirmed"] = _outcome(self.confirmation, self.confirmation.steps)
        return out

    def sentence(self) -> str:
        lo, hi = self.lr(min(self.good)), self.lr(max(self.good))
        span = f"{_g(lo)}" if lo == hi else f"{_g(lo)} to {_g(hi)}"
        text = f"Learning-rate range test ({len(self.runs)} rates x {SWEEP_STEPS} steps on this batch): fast stable progress at {span}"
        unstable = [k for k in self.runs if k > max(self.good) and not self.stable[k]]
        if unstable:
            text += f" (unstable from {_g(self.lr(min(unstable)))})"
        if self.suggested != 0:
            text += f"; suggested {_g(self.lr(self.suggested))} (yours is {_g(self.base_lr)})"
        elif 0 in self.good:
            text += f"; your lr {_g(self.base_lr)} is in range"
        else:
            text += f"; faster rates do not hold the goal when trained longer: keep yours ({_g(self.base_lr)})"
        c = self.confirmation
        if c is not None:
            text += (f", confirmed: it reaches the goal in {c.converged_at} steps" if c.converged
                     else f", which did not reach the goal in {c.steps} steps")
        return text + "."


def lr_range(exp: Experiment) -> LrRange | None:
    """Try the user's learning rate times 10**k, widening towards better rates until the best is
    inside the tried range; then train the suggested rate to the goal. Deterministic for a seed."""
    if isinstance(exp.sweep, LrRange) or exp.sweep is None:
        return exp.sweep
    base_lr = exp.baseline.lr
    if base_lr is None or not base_lr > 0:
        exp.sweep = None
        return None
    deadline = exp.until(SWEEP_SHARE * max(exp.time_left(), 0.0))
    runs: dict[int, Trainer] = {0: exp.baseline}
    ranks: dict[int, tuple] = {0: _rank(exp.baseline, SWEEP_STEPS)}

    def attempt(k: int) -> bool:
        if k in runs or not MIN_EXPONENT <= k <= MAX_EXPONENT or len(runs) >= MAX_SWEEP_RUNS:
            return False
        if time.monotonic() >= deadline:
            return False
        exp.ctx.progress(f"{STEP}: learning rate {_g(base_lr * 10.0**k)}")
        trainer = exp.shared(lr_variant(base_lr, k), give_up=curve.EXPLODE_RATIO)  # unstable is all we need to know
        trainer.advance(SWEEP_STEPS, deadline)
        if trainer.status == "running" and trainer.steps < SWEEP_STEPS:
            return False  # cut by time: no fair comparison
        runs[k], ranks[k] = trainer, _rank(trainer, SWEEP_STEPS)
        return True

    if not exp.baseline.converged:
        attempt(-1)  # a converged baseline is faster than any lower rate: start upwards
    attempt(1)
    while True:  # widen towards the better side until the best rate has a worse one on each side
        best = min(ranks, key=lambda k: (ranks[k], -k))
        if ranks[best][0] == 2:
            beyond = min(runs) - 1  # everything tried is unstable: go lower
        elif best == max(runs):
            beyond = best + 1
        elif best == min(runs):
            beyond = best - 1
        else:
            break
        if not attempt(beyond):
            break
    best = min(ranks, key=lambda k: (ranks[k], -k))
    good = _within_reach(ranks, best)
    attempt(max(good) + 1)  # how far above the good range training stays stable: the safety margin
    stable = {k: ranks[k][0] < 2 for k in runs}
    # The smallest change to the user's rate that lands in the good range: stays put when it is in it;
    # lowering keeps a stable rate above the suggestion (a margin from divergence) where there is one.
    if 0 in good:
        suggested = 0
    elif min(good) > 0:
        suggested = min(good)
    else:
        safe = [k for k in good if stable.get(k + 1)]
        suggested = max(safe) if safe else min(good)
    sweep = LrRange(base_lr, runs, ranks, stable, good, suggested)
    _confirm(exp, sweep)
    exp.sweep = sweep
    return sweep


def _confirm(exp: Experiment, sweep: LrRange) -> None:
    """Train the suggested rate to the goal; if it does not get there, the other good rates (nearest the
    user's first), then the user's own if it did: a suggestion is only made once it is confirmed."""
    candidates = [sweep.suggested] + sorted((k for k in sweep.good if k != sweep.suggested), key=abs)
    if exp.baseline.converged and 0 not in candidates:
        candidates.append(0)
    for k in candidates:
        if not sweep.stable.get(k) or exp.time_left() <= 0:
            continue
        trainer = exp.run(sweep.runs[k].variant)
        if sweep.confirmation is None or trainer.converged:
            sweep.suggested, sweep.confirmation = k, trainer
        if trainer.converged:
            return


def _rank(trainer: Trainer, steps: int) -> tuple:
    """How well a run did in its first ``steps`` steps: unstable (a run known to go unstable later, like
    the baseline, counts), else reached the goal (by how soon), else by how far its measure fell."""
    whole = curve.describe(trainer.measure)
    if whole.kind in UNSTABLE and not trainer.converged:
        return (2, whole.peak_ratio)
    if trainer.first_reached is not None and trainer.first_reached <= steps:
        return (0, trainer.first_reached)
    shape = curve.describe(trainer.measure[:steps])
    return (1, shape.end / shape.start if shape.start > 0 else shape.end)


def _within_reach(ranks: dict[int, tuple], best: int) -> list[int]:
    """Exponents whose run is close to the best's, contiguous around it."""
    tier, score = ranks[best]

    def close(k: int) -> bool:
        t, s = ranks[k]
        if t != tier or tier == 2:
            return k == best
        return s <= CLOSE_STEPS * score if tier == 0 else (1 - s) >= (1 - CLOSE_FALL) * (1 - score)

    good = [best]
    for direction in (1, -1):
        k = best + direction
        while k in ranks and close(k):
            good.append(k)
            k += direction
    return sorted(good)


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
    message = (f"The model overfits one batch of {exp.samples} samples: {_goal_words(exp)} after "
               f"{base.converged_at} steps ({_loss_words(base, base.converged_at)}).")
    evidence = _run_evidence(exp)
    if sweep is not None:
        message += " " + sweep.sentence()
        evidence["lr_range"] = sweep.evidence()
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
    evidence = _run_evidence(exp)
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
    message = (f"While overfitting one batch of {exp.samples} samples, {measured} rises: "
               f"{_series_words(base.measure[:steps])} in {steps} steps ({_error_words(base, steps)}). Cause: {cause}. "
               f"Confirmed from the start weights: one optimizer step changes {measured} by "
               f"{_signed(d.task_change if d.task_change is not None else d.loss_change)}")
    if d.descent_change is not None:
        message += f", a step of the same length down its gradient by {_signed(d.descent_change)}"
    message += "."
    finding = ctx.emit("OFB001", message, location=location, evidence=evidence, suggestions=suggestions)
    if fix is not None:
        _verify(exp, finding, fixes.FixTrial(fix_words, fix))
    return True


def _non_finite_from_the_start(ctx: Context, exp: Experiment) -> None:
    """OFB002 without a learning rate to blame: the first loss, before any update, is already NaN/Inf."""
    base = exp.baseline
    causes = sorted({f.code for f in ctx.findings if f.code in ("DAT001", "DAT002") or f.code.startswith("NUM")})
    message = (f"While overfitting one batch of {exp.samples} samples, the loss is {_g(base.loss[0])} at the first "
               "step, before any update: no learning rate can help; the data or the forward pass produce it.")
    if causes:
        message += f" Found: {', '.join(causes)}."
    ctx.emit("OFB002", message, location="model", evidence=_run_evidence(exp),
             suggestions=["Look for NaN/Inf in the inputs and targets (DAT002) and for the first module that makes "
                          "them (NUM001)."])


def _too_fast(ctx: Context, exp: Experiment, shape: curve.Shape, code: str) -> None:
    """OFB002/OFB003: confirm that a lower learning rate reaches the goal and stays (then it is the rate)."""
    base = exp.baseline
    steps = exp.baseline_steps
    if code == "OFB002":
        what = (f"becomes NaN/Inf at step {shape.first_non_finite}" if shape.first_non_finite is not None
                else f"explodes to {_g(shape.max)} ({shape.peak_ratio:.3g}x its start {_g(shape.start)})")
    elif shape.kind == "rises":
        what = f"rises from {_g(shape.start)} to {_g(shape.end)} although each step starts downhill"
    else:
        what = (f"oscillates: it fell and climbed back by {shape.rebound:.0%} of its start, ending at "
                f"{_g(shape.end)} (from {_g(shape.start)})")
    measured = "the task loss" if base.meter is not None else "the loss"
    message = f"While overfitting one batch of {exp.samples} samples, {measured} {what} within {steps} steps."
    evidence = _run_evidence(exp)
    suggestions: list[str] = []
    sweep = lr_range(exp)
    if sweep is not None:
        evidence["lr_range"] = sweep.evidence()
    lower = _lower_rate_that_converges(exp, sweep)
    if lower is not None:
        k, c = lower
        message += (f" Confirmed: it is the learning rate. With lr {_g(c.lr)} ({10 ** -k:g}x lower) the copy reaches "
                    f"the goal in {c.converged_at} steps and stays there.")
        if sweep is not None:
            message += " " + sweep.sentence()
        suggestions.append(f"Lower the learning rate to about {_g(c.lr)} (or add warm-up / gradient clipping).")
        evidence["verified_fix"] = _comparison(base, c, f"with lr {_g(c.lr)}")
        exp.keep_curve(f"confirmation: lr {_g(c.lr)}", c)
    elif code == "OFB002":
        lowest = min(exp.lower_rates_tried, default=0)
        tried = f"even with lr {_g(base.lr * 10.0**lowest)} ({10 ** -lowest:g}x lower)" if lowest < 0 else ""
        message += (f" Not the learning rate alone: {tried or 'a lower learning rate could not be tried'} it does not "
                    "converge. Look for a numerical problem: the NUM findings name the first NaN/Inf.")
        numerics = sorted({f.code for f in ctx.findings if f.code.startswith("NUM") or f.code in ("DAT001", "DAT002")})
        if numerics:
            message += f" Found: {', '.join(numerics)}."
        suggestions.append("Check for log/exp/division on unbounded values, and for unnormalised inputs (DAT001).")
    else:
        message += " A learning rate 10x or 100x lower did not settle it either."
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
             suggestions=suggestions)


def _lower_rate_that_converges(exp: Experiment, sweep: LrRange | None) -> tuple[int, Trainer] | None:
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


def _stalls(ctx: Context, exp: Experiment, shape: curve.Shape) -> None:
    """OFB004: try each change that could unblock a plateau (or a slow descent) and say which does."""
    base = exp.baseline
    steps = exp.baseline_steps
    plateau = shape.kind == "plateaus"
    measured = "the task loss" if base.meter is not None else "the loss"
    words = (f"plateaus at {_g(shape.end)} (from {_g(shape.start)})" if plateau
             else f"is still falling slowly ({_g(shape.start)} to {_g(shape.end)})")
    message = f"The model does not overfit one batch of {exp.samples} samples: after {steps} steps {measured} {words}"
    message += f"; {_error_words(base, steps)}." if base.meter is not None else "."
    evidence = _run_evidence(exp)
    sweep = lr_range(exp)
    if sweep is not None:
        evidence["lr_range"] = sweep.evidence()
    tried: list[dict[str, Any]] = []
    unblocked: list[str] = []
    suggestions: list[str] = []
    for change, advice, trainer in _unblocking_runs(ctx, exp, sweep):
        result = _comparison(base, trainer, change)
        tried.append(result)
        if result["verified"]:
            unblocked.append(f"{change} ({_outcome_words(trainer)})")
            suggestions.append(advice)
            exp.keep_curve(f"confirmation: {change}", trainer)
    evidence["tried"] = tried
    if unblocked:
        message += " Confirmed by changing one thing at a time on a copy: it unblocks " + "; ".join(unblocked) + "."
        evidence["verified_fix"] = next(t for t in tried if t["verified"])
    elif tried:
        message += (" None of these unblocks it: " + ", ".join(t["fix"] for t in tried) + ". Look at the loss and "
                    "the data (LOS, DAT findings) and at gradient flow (GRD findings).")
    related = sorted({f.code for f in ctx.findings if f.code.startswith(("LOS", "DAT", "NUM", "MOD"))})
    if related:
        message += f" Earlier findings that can cause this: {', '.join(related)}."
    ctx.emit("OFB004", message, location="model", evidence=evidence, suggestions=suggestions,
             severity=None if plateau else "info")  # slow but still falling is not a bug


def _unblocking_runs(ctx: Context, exp: Experiment, sweep: LrRange | None):
    """(the change, the advice, the run) for each change worth trying on a stalled run."""
    base = exp.baseline
    if sweep is not None and sweep.suggested > 0 and sweep.confirmation is not None:
        lr = _g(sweep.lr(sweep.suggested))
        yield f"lr {lr}", f"Raise the learning rate to about {lr} (it is {_g(base.lr)}).", sweep.confirmation
    if exp.grads.steps and not exp.grads.update_norm.any() and exp.time_left() > 0:
        trial = fixes.rebuilt_optimizer(ctx)
        yield trial.description, "Build the optimizer over this model's parameters (see GRD002).", exp.run(trial.after)
    decay = max((g.get("weight_decay") or 0 for g in base.optimizer.param_groups), default=0)
    if decay and exp.time_left() > 0:
        yield ("without weight decay", f"Lower the weight decay (it is {_g(decay)}).",
               exp.run(Variant(label="weight_decay=0", hyper={"weight_decay": 0.0})))
    if _has_dropout(base.model) and exp.time_left() > 0:
        yield "without dropout", "Lower the dropout rate.", exp.run(Variant(label="dropout off", edit=_no_dropout))
    for finding in list(ctx.findings):
        trial = _trial(ctx, finding)
        if trial is not None and trial.before is None and exp.time_left() > 0:
            yield (f"{trial.description} ({finding.code})", f"Fix {finding.code} at {finding.location}.",
                   exp.run(trial.after))


def _has_dropout(model: nn.Module) -> bool:
    return any(isinstance(m, nn.modules.dropout._DropoutNd) and m.p > 0
               or isinstance(m, nn.MultiheadAttention) and m.dropout > 0 for m in model.modules())


def _no_dropout(model: nn.Module) -> None:
    for m in model.modules():
        if isinstance(m, nn.modules.dropout._DropoutNd):
            m.p = 0.0
        elif isinstance(m, nn.MultiheadAttention):
            m.dropout = 0.0


# ----- verified fixes ---------------------------------------------------------------------------------
def verify_fixes(ctx: Context, findings: list[Finding]) -> None:
    """For each finding with a mechanical fix (``nndoctor.fixes``), run the single-batch experiment
    with and without it and attach both curves to the finding."""
    for finding in findings:
        trial = _trial(ctx, finding) if "verified_fix" not in finding.evidence else None
        if trial is None:
            continue
        exp = experiment(ctx)
        if exp.time_left() <= 0:
            break
        _verify(exp, finding, trial)


def _trial(ctx: Context, finding: Finding) -> fixes.FixTrial | None:
    """The mechanical fix of an error or warning, if it has one that fits this model (OFB findings
    are confirmed by their own experiments)."""
    if finding.code.startswith("OFB") or finding.severity == Severity.INFO:
        return None
    try:
        return fixes.trial_for(ctx, finding)
    except Exception:  # noqa: BLE001 - the fix does not apply to this model; the finding stands as it is
        return None


def _verify(exp: Experiment, finding: Finding, trial: fixes.FixTrial) -> None:
    base = exp.baseline
    steps = min(MAX_STEPS, max(60, 2 * (base.converged_at or exp.baseline_steps)))
    exp.ctx.progress(f"{STEP}: verifying the fix of {finding.code}")
    try:
        before = exp.run(trial.before or base.variant, steps, stop_at_goal=False)
        after = exp.run(trial.after, steps, stop_at_goal=False)
    except Exception:  # noqa: BLE001 - the change does not apply to this model (e.g. a module it cannot replace)
        return
    result = _comparison(before, after, trial.description, steps)
    finding.evidence["verified_fix"] = result  # also when the fix made no clear difference on one batch
    if not result["verified"]:
        return
    finding.message += (f" Verified on a copy (one batch, {min(before.steps, after.steps)} steps): before: "
                        f"{_outcome_words(before, steps)}; {trial.description}: {_outcome_words(after, steps)}.")
    if trial.before is not None:
        exp.keep_curve(f"{finding.code} before: {trial.before.label}", before)
    exp.keep_curve(f"{finding.code} fix: {trial.description}", after)


def _comparison(before: Trainer, after: Trainer, description: str, steps: int | None = None) -> dict[str, Any]:
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


# ----- words and evidence -----------------------------------------------------------------------------
def _run_evidence(exp: Experiment) -> dict[str, Any]:
    base = exp.baseline
    steps = exp.baseline_steps
    curve_steps, values = curve.downsample(base.loss[:steps], DOWNSAMPLE)
    evidence: dict[str, Any] = {
        "samples": exp.samples, "steps": steps, "seconds": round(base.seconds, 3), "lr": base.lr,
        "goal": _goal_words(exp), "converged_at": base.converged_at,
        "loss": _span(base.loss[:steps]), "curve": values, "curve_steps": curve_steps,
        "shape": curve.describe(base.measure[:steps]).as_evidence(),
    }
    if base.meter is not None:
        evidence["task_loss"] = _span(base.task_loss[:steps])
        evidence["error"] = _span(base.error[:steps])
        evidence["error_values"] = curve.downsample(base.error[:steps], DOWNSAMPLE)[1]
    return evidence


def _span(values: list[float]) -> dict[str, float]:
    finite = [v for v in values if math.isfinite(v)] or [math.nan]
    return {"start": _g(values[0]), "end": _g(values[-1]), "min": _g(min(finite))}


def _goal_words(exp: Experiment) -> str:
    if exp.baseline.meter is None:
        return f"the loss at {LOSS_OK:.0%} of its start"
    if exp.kind == "regression":
        return f"MSE at most {REGRESSION_OK:.0%} of the targets' variance"
    return f"at most {ERROR_OK:.0%} of labels wrong"


def _outcome(trainer: Trainer, steps: int) -> dict[str, Any]:
    values = trainer.measure[:steps]
    out: dict[str, Any] = {"steps": min(steps, trainer.steps), "end": _g(values[-1]) if values else None}
    if trainer.converged_at is not None and trainer.converged_at <= steps:
        out["converged_at"] = trainer.converged_at
    return out


def _outcome_words(trainer: Trainer, steps: int | None = None) -> str:
    steps = trainer.steps if steps is None else min(steps, trainer.steps)
    if trainer.converged_at is not None and trainer.converged_at <= steps:
        return f"reaches the goal in {trainer.converged_at} steps, {_loss_words(trainer, steps)}"
    shape = curve.describe(trainer.measure[:steps])
    if shape.first_non_finite is not None:
        return f"NaN/Inf at step {shape.first_non_finite}"
    if shape.kind == "explodes":
        return f"exploded to {_g(shape.max)}, at {_g(shape.end)} after {steps} steps ({_error_words(trainer, steps)})"
    kind = {"plateaus": "plateau at", "descends": "still falling, at", "oscillates": "oscillating, at",
            "rises": "rising, at"}[shape.kind]
    return f"{kind} {_g(shape.end)} after {steps} steps ({_error_words(trainer, steps)})"


def _loss_words(trainer: Trainer, steps: int) -> str:
    return f"loss {_g(trainer.loss[0])} to {_g(trainer.loss[steps - 1])}"


def _error_words(trainer: Trainer, steps: int) -> str:
    if not trainer.error:
        return _loss_words(trainer, steps)
    return f"error {_g(trainer.error[0])} to {_g(trainer.error[steps - 1])}, {_loss_words(trainer, steps)}"


def _series_words(values: list[float]) -> str:
    return f"{_g(values[0])} to {_g(values[-1])}"


def _signed(v: float) -> str:
    return f"{v:+.3g}"


def _g(v: float) -> float:
    return float(f"{v:.3g}") if isinstance(v, (int, float)) and math.isfinite(v) else v
