"""The learning-rate range test of step 3: short runs at the user's learning rate times 10**k on the fixed
batch, widened towards better rates until the best is inside the tried range, then the suggested rate
trained to the goal to confirm it. Read by OFB000 (the range), OFB002/OFB003 (a lower rate) and OFB004 (a
higher one).
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from nndoctor.checks.overfit_experiment import (MAX_EXPONENT, MAX_SWEEP_RUNS, MIN_EXPONENT, STEP, SWEEP_SHARE,
                                                SWEEP_STEPS, UNSTABLE, Experiment, num, outcome)
from nndoctor.probes import curve
from nndoctor.probes.single_batch import OneBatch, lr_variant

# Beyond the user's rate times 10**+-4, the range test still reaches these (an SGD rate of 1e-7 is 6 decades
# from a working one): the span of fastai's lr_find.
LOWEST_LR, HIGHEST_LR = 1e-7, 10.0
CLOSE_STEPS = 2.0  # in the range: converges within twice the best's steps
CLOSE_FALL = 0.25  # or (when none converges) falls at least 75% as far as the best


@dataclass
class LrRange:
    """Runs of SWEEP_STEPS steps at the user's learning rate times 10**k, and what they say."""

    base_lr: float
    runs: dict[int, OneBatch]  # exponent k -> run
    ranks: dict[int, tuple]  # exponent -> sort key (lower is better)
    stable: dict[int, bool]
    good: list[int]  # exponents within reach of the best
    suggested: int
    confirmation: OneBatch | None = None  # the suggested rate, trained to the goal

    def lr(self, k: int) -> float:
        return self.base_lr * 10.0**k

    def evidence(self) -> dict[str, Any]:
        tried = sorted(self.runs)
        out: dict[str, Any] = {
            "steps_per_rate": SWEEP_STEPS,
            "tried": [{"lr": num(self.lr(k)), "stable": self.stable[k], **outcome(self.runs[k], SWEEP_STEPS)}
                      for k in tried],
            "range": [num(self.lr(min(self.good))), num(self.lr(max(self.good)))],
            "suggested": num(self.lr(self.suggested)),
        }
        unstable_above = [k for k in tried if k > max(self.good) and not self.stable[k]]
        if unstable_above:
            out["unstable_from"] = num(self.lr(min(unstable_above)))
        if self.confirmation is not None:
            out["confirmed"] = outcome(self.confirmation, self.confirmation.steps)
        return out

    def sentence(self) -> str:
        lo, hi = self.lr(min(self.good)), self.lr(max(self.good))
        span = f"{num(lo)}" if lo == hi else f"{num(lo)} to {num(hi)}"
        text = f"Learning-rate range test ({len(self.runs)} rates x {SWEEP_STEPS} steps on this batch): fast stable progress at {span}"
        unstable = [k for k in self.runs if k > max(self.good) and not self.stable[k]]
        if unstable:
            text += f" (unstable from {num(self.lr(min(unstable)))})"
        if self.suggested != 0:
            text += f"; suggested {num(self.lr(self.suggested))} (yours is {num(self.base_lr)})"
        elif 0 in self.good:
            text += f"; your lr {num(self.base_lr)} is in range"
        else:
            text += f"; faster rates do not hold the goal when trained longer: keep yours ({num(self.base_lr)})"
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
    if base_lr is None or not base_lr > 0 or exp.ctx.mode == "quick":  # --quick: the verdicts, not the range
        exp.sweep = None
        return None
    deadline = exp.until(SWEEP_SHARE * max(exp.time_left(), 0.0))
    runs: dict[int, OneBatch] = {0: exp.baseline}
    ranks: dict[int, tuple] = {0: _rank(exp.baseline, SWEEP_STEPS)}

    def attempt(k: int) -> bool:
        in_range = MIN_EXPONENT <= k <= MAX_EXPONENT or LOWEST_LR <= base_lr * 10.0**k <= HIGHEST_LR
        if k in runs or not in_range or len(runs) >= MAX_SWEEP_RUNS:
            return False
        if time.monotonic() >= deadline:
            return False
        exp.ctx.progress(f"{STEP}: learning rate {num(base_lr * 10.0**k)}")
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


def _rank(trainer: OneBatch, steps: int) -> tuple:
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
