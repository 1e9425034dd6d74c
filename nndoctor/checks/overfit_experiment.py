"""The single-batch experiment of step 3, shared by the overfit (OFB) and gradient-flow (GRD) checks: the
fixed batch (the first batch, cut to MAX_SAMPLES samples), the baseline run with gradient statistics,
the runs of variants every check continues, the time they share, and how a run is described in messages
and evidence. Measures and words only: the verdicts are in checks/overfit.py, lr_range.py, verified_fixes.py.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any

from nndoctor import data as D
from nndoctor.context import Context
from nndoctor.probes import curve
from nndoctor.probes.grad_stats import GradStats
from nndoctor.probes.single_batch import OneBatch, Variant

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
MAX_SWEEP_RUNS = 10  # enough to walk from a rate 6 decades off (1e-7) to a working one
MIN_EXPONENT, MAX_EXPONENT = -4, 4  # the range test tries the user's lr times 10**k for k in this range
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
    baseline: OneBatch
    baseline_steps: int  # steps of the baseline's own run (verifications may extend it later)
    grads: GradStats
    curves: dict[str, Any] = field(default_factory=dict)  # for the HTML report: label -> curve
    sweep: Any = "not run"  # the LrRange once run (checks/lr_range.py); None: it cannot run
    runs: dict[str, OneBatch] = field(default_factory=dict)  # variant label -> its run, shared by the checks
    lower_rates_tried: list[int] = field(default_factory=list)  # exponents tried to tame an unstable run
    batch_size: int = 0  # samples in the user's first batch, of which the fixed batch keeps ``samples``

    @property
    def batch_words(self) -> str:
        """'one batch of 64 samples', saying so when the user's batch was cut to a sub-batch."""
        cut = f" (the first {self.samples} of a batch of {self.batch_size})" if self.batch_size > self.samples else ""
        return f"one batch of {self.samples} samples{cut}"

    def trainer(self, variant: Variant, **options: Any) -> OneBatch:
        """A fresh copy in training for ``variant``."""
        return OneBatch(self.ctx, self.batch, variant, kind=self.kind, error_ok=error_ok(self.kind),
                        loss_ok=LOSS_OK, seed=self.ctx.seed, **options)

    def shared(self, variant: Variant, **options: Any) -> OneBatch:
        """The run of ``variant`` (by label) that every check continues, created on first use."""
        if variant.label not in self.runs:
            self.runs[variant.label] = self.trainer(variant, **options)
        return self.runs[variant.label]

    def run(self, variant: Variant, steps: int = MAX_STEPS, stop_early: bool = True) -> OneBatch:
        """The run of ``variant``, advanced until the goal, ``steps``, or twice the time the baseline
        needed per step (a slow variant must not eat the time of the others)."""
        trainer = self.shared(variant)
        self.ctx.progress(f"{STEP}: {variant.label}")
        per_step = self.baseline.seconds / max(self.baseline_steps, 1)
        trainer.advance(steps, self.until(2 * per_step * max(steps - trainer.steps, 0) + 1.0), stop_early)
        return trainer

    def until(self, seconds: float | None = None) -> float:
        now = time.monotonic()
        return min(self.deadline, now + seconds) if seconds is not None else self.deadline

    def time_left(self) -> float:
        return max(0.0, self.deadline - time.monotonic())

    def release(self, keep: OneBatch | None = None) -> None:
        """Free every copy but ``keep`` (memory: a large model is copied once per run)."""
        for trainer in self.runs.values():
            if trainer is not keep:
                trainer.release()
        if keep is None:
            self.grads.release()

    def keep_curve(self, label: str, trainer: OneBatch) -> None:
        steps, values = curve.downsample(trainer.loss, DOWNSAMPLE)
        self.curves[label] = {"steps": steps, "loss": values}


def error_ok(kind: str) -> float:
    return REGRESSION_OK if kind == "regression" else ERROR_OK


def experiment(ctx: Context) -> Experiment:
    """Run the baseline once per playbook run; every OFB and GRD check reads it (or the same reason to skip)."""
    return ctx.measure_or_skip("single_batch", lambda: _start(ctx))


def _start(ctx: Context) -> Experiment | str:
    batch = ctx.first_batch()
    samples = batch_size = D.batch_len(batch)
    if samples > MAX_SAMPLES:
        try:
            batch = D.index(batch, slice(0, MAX_SAMPLES))
            samples = MAX_SAMPLES
        except (IndexError, TypeError, RuntimeError):  # a batch with per-batch (not per-sample) tensors
            pass
    share = min(MAX_SECONDS, SHARE * ctx.budget.remaining())
    now = time.monotonic()
    kind = ctx.task.kind
    baseline = OneBatch(ctx, batch, Variant(label="as given"), kind=kind, error_ok=error_ok(kind), loss_ok=LOSS_OK,
                        record_grads=True, seed=ctx.seed)
    ctx.progress(f"{STEP}: training a copy on one batch of {samples} samples"
                 + (f" (of {batch_size}: a sub-batch shows the same bugs, faster)" if batch_size > samples else ""))
    baseline.advance(MAX_STEPS, now + BASELINE_SHARE * share)
    if baseline.steps == 0:
        return f"the single-batch run failed at its first step: {baseline.failure or 'no time left'}"
    grads, baseline.stats = baseline.stats, None  # later extensions of the baseline are not measured
    exp = Experiment(ctx, batch, samples, kind, now + share, baseline, baseline.steps, grads, batch_size=batch_size)
    exp.runs[baseline.variant.label] = baseline
    exp.keep_curve("baseline (as given)", baseline)
    ctx.extras["overfit"] = {"ylabel": "loss (as optimised)", "curves": exp.curves, "samples": samples}
    return exp


# ----- words and evidence -----------------------------------------------------------------------------
def run_evidence(exp: Experiment) -> dict[str, Any]:
    base = exp.baseline
    steps = exp.baseline_steps
    curve_steps, values = curve.downsample(base.loss[:steps], DOWNSAMPLE)
    evidence: dict[str, Any] = {
        "samples": exp.samples, "batch_size": exp.batch_size, "steps": steps, "seconds": round(base.seconds, 3),
        "lr": base.lr,
        "goal": goal_words(exp), "converged_at": base.converged_at,
        "loss": span(base.loss[:steps]), "curve": values, "curve_steps": curve_steps,
        "shape": curve.describe(base.measure[:steps]).as_evidence(),
    }
    if base.meter is not None:
        evidence["task_loss"] = span(base.task_loss[:steps])
        evidence["error"] = span(base.error[:steps])
        evidence["error_values"] = curve.downsample(base.error[:steps], DOWNSAMPLE)[1]
    return evidence


def span(values: list[float]) -> dict[str, float]:
    finite = [v for v in values if math.isfinite(v)] or [math.nan]
    return {"start": num(values[0]), "end": num(values[-1]), "min": num(min(finite))}


def goal_words(exp: Experiment) -> str:
    if exp.baseline.meter is None:
        return f"the loss at {LOSS_OK:.0%} of its start"
    if exp.kind == "regression":
        return f"MSE at most {REGRESSION_OK:.0%} of the targets' variance"
    return f"at most {ERROR_OK:.0%} of labels wrong"


def outcome(trainer: OneBatch, steps: int) -> dict[str, Any]:
    values = trainer.measure[:steps]
    out: dict[str, Any] = {"steps": min(steps, trainer.steps), "end": num(values[-1]) if values else None}
    if trainer.converged_at is not None and trainer.converged_at <= steps:
        out["converged_at"] = trainer.converged_at
    return out


def outcome_words(trainer: OneBatch, steps: int | None = None) -> str:
    steps = trainer.steps if steps is None else min(steps, trainer.steps)
    if trainer.converged_at is not None and trainer.converged_at <= steps:
        return f"reaches the goal in {trainer.converged_at} steps, {loss_words(trainer, steps)}"
    shape = curve.describe(trainer.measure[:steps])
    if shape.first_non_finite is not None:
        return f"NaN/Inf at step {shape.first_non_finite}"
    if shape.kind == "explodes":
        return f"exploded to {num(shape.max)}, at {num(shape.end)} after {steps} steps ({error_words(trainer, steps)})"
    kind = {"plateaus": "plateau at", "descends": "still falling, at", "oscillates": "oscillating, at",
            "rises": "rising, at"}[shape.kind]
    return f"{kind} {num(shape.end)} after {steps} steps ({error_words(trainer, steps)})"


def loss_words(trainer: OneBatch, steps: int) -> str:
    return f"loss {num(trainer.loss[0])} to {num(trainer.loss[steps - 1])}"


def error_words(trainer: OneBatch, steps: int) -> str:
    if not trainer.error:
        return loss_words(trainer, steps)
    return f"error {num(trainer.error[0])} to {num(trainer.error[steps - 1])}, {loss_words(trainer, steps)}"


def series_words(values: list[float]) -> str:
    return f"{num(values[0])} to {num(values[-1])}"


def signed(v: float) -> str:
    return f"{v:+.3g}"


def num(v: float) -> float:
    return float(f"{v:.3g}") if isinstance(v, (int, float)) and math.isfinite(v) else v
