"""Step 2, an untrained loss far from what an uninformed model gives (LOS004): each loss call of the traced
pass (``loss.py``) against the loss of a prediction that has learnt nothing (uniform classes, the mean
target). A warning only when the harm is measured: a copy trained on the first batch still carries the excess.
"""
from __future__ import annotations

import math
import time
from typing import Any

import torch

from nndoctor.checks import SkipCheck, check
from nndoctor.checks.loss import (LOG_PROB_LOSSES, MODULE_OF, REGRESSION, _class_dim, _explained, _loss_name, _losses,
                                  _mean, _where)
from nndoctor.context import Context
from nndoctor.probes.op_trace import LossCall
from nndoctor.trainer import FixedBatch, Trainer

# Untrained classifiers land near the uniform loss (ln C): a loss above it by more than max(1, itself)
# means confident random predictions. Clean models start within +-20% of it.
CLASS_SLACK = 1.0
# Regression: an untrained output near 0 gives the target variance plus the squared target mean (and
# the outputs' own spread). Ten times the variance means targets centred over three spreads away from 0
# (temperatures in kelvin); four times with targets in the tens or more (raw prices, scores) is as bad,
# because with Adam the output walks there at about lr per step. Clean models start at 1-2x; counts or
# house prices in units of 100k (mean about two spreads, values near 1) stay below. L1-type losses grow
# with the offset, not its square.
FAR = {"mse_loss": (10.0, 4.0), "l1_loss": (3.5, 2.0), "smooth_l1_loss": (3.5, 2.0), "huber_loss": (3.5, 2.0)}
LARGE_TARGETS = 10.0  # root-mean-square target from which a moderate offset already counts
# Harm: a copy trained RECOVERY_STEPS steps on the first batch with the user's optimizer still carries more
# than PERSISTS of the excess over the uninformed loss (a clean start is below the uninformed loss by then).
RECOVERY_STEPS, PERSISTS = 30, 0.1
RECOVERY_SECONDS = 10.0  # at most this (and 5% of the budget left) for that run: a large model does fewer steps


@check("initial-loss", step="bugs", codes=("LOS004",))
def initial_loss(ctx: Context) -> None:
    """Each loss call's value on the untrained model against an uninformed prediction's."""
    if ctx.setup.trained:
        raise SkipCheck("the model is already trained (Setup(trained=True))")
    explained = _explained(ctx)
    for i, call in enumerate(_losses(ctx)):
        if i in explained or not call.input.is_floating_point():
            continue
        reference = _uninformed(call)
        if reference is None:
            continue
        value = _mean(call.value)
        expected, words = reference
        if not (math.isfinite(value) and math.isfinite(expected)):
            continue
        if call.name in FAR:
            ratio = value / expected if expected > 1e-12 else 0.0
            large = float(call.target.float().pow(2).mean().sqrt()) > LARGE_TARGETS
            far = ratio > FAR[call.name][0] or (large and ratio > FAR[call.name][1])
        else:
            far = value > expected + max(CLASS_SLACK, expected)
        if far:
            _report_initial_loss(ctx, call, value, expected, words, _recovery(ctx))


def _recovery(ctx: Context) -> tuple[float, float, int] | None:
    """(loss at the first step, loss after RECOVERY_STEPS, steps run) of a copy trained on the first batch with
    the user's optimizer (once per run; None when it cannot train)."""
    def compute() -> tuple[float, float, int] | None:
        run = Trainer(ctx, FixedBatch(ctx.first_batch()), seed=ctx.seed, give_up=float("inf"))
        run.advance(RECOVERY_STEPS + 1, time.monotonic() + min(RECOVERY_SECONDS, 0.05 * ctx.budget.remaining()))
        if run.steps < 2 or not all(math.isfinite(v) for v in (run.loss[0], run.loss[-1])):
            return None
        return run.loss[0], run.loss[-1], run.steps - 1
    return ctx.measure("loss:recovery", compute)


def _uninformed(call: LossCall) -> tuple[float, str] | None:
    """The loss of a model that has learnt nothing, and how it is made, in words; None when unknown."""
    x, y = call.input, call.target
    try:
        c = x.shape[_class_dim(x)] if x.ndim else 1
        if call.name == "cross_entropy":
            return _mean(call.recompute(torch.zeros_like(x))), f"uniform predictions over {c} classes: ln {c}"
        if call.name in LOG_PROB_LOSSES:
            return _mean(call.recompute(torch.full_like(x, -math.log(c)))), f"uniform predictions over {c} classes"
        if call.name == "binary_cross_entropy_with_logits":
            return _mean(call.recompute(torch.zeros_like(x))), "predicting 0.5 everywhere: ln 2"
        if call.name == "binary_cross_entropy":
            return _mean(call.recompute(torch.full_like(x, 0.5))), "predicting 0.5 everywhere: ln 2"
        if call.name in REGRESSION and isinstance(y, torch.Tensor) and y.shape == x.shape and y.ndim >= 1:
            mean = y.float().mean(0, keepdim=True).expand_as(x).to(x.dtype)
            name = ": the target variance" if call.name == "mse_loss" else ""
            return _mean(call.recompute(mean)), f"always predicting the mean target{name}"
    except (RuntimeError, ValueError, TypeError, IndexError):
        return None
    return None


def _report_initial_loss(ctx: Context, call: LossCall, value: float, expected: float, words: str,
                         recovery: tuple[float, float, int] | None) -> None:
    x, y = call.input.float(), call.target
    evidence: dict[str, Any] = {"initial_loss": value, "expected": expected, "loss": MODULE_OF[call.name],
                                "output_mean": float(x.mean()), "output_std": float(x.std()) if x.numel() > 1 else 0.0}
    if call.name in FAR:
        yf = y.float()
        evidence.update(target_mean=float(yf.mean()), target_std=float(yf.std()) if yf.numel() > 1 else 0.0)
        cause = (f"The targets have mean {evidence['target_mean']:.4g} and spread {evidence['target_std']:.4g} "
                 f"while the untrained outputs have mean {evidence['output_mean']:.4g} and spread "
                 f"{evidence['output_std']:.4g}.")
        fixes = ["Standardise the targets (subtract the mean, divide by the spread; undo it at inference), or "
                 "initialise the output layer's bias to the target mean.",
                 "If the outputs are the large ones, scale the last layer's initialisation down or normalise the "
                 "inputs."]
    else:
        cause = (f"The untrained predictions are far too confident (the outputs fed to the loss spread "
                 f"{evidence['output_std']:.3g}); a well-initialised model starts out predicting every class about "
                 "equally.")
        fixes = ["Use the default initialisation (or scale the last layer's weights down, e.g. x 0.01), and check "
                 "the input scale (DAT001)."]
    severity, harm = "info", " Harm not measured: a short training run of a copy did not run."
    if recovery is not None:
        first, last, steps = recovery
        left = (last - (first - (value - expected))) / (value - expected)  # share of the excess still there
        evidence.update(recovery={"steps": steps, "loss_start": first, "loss_end": last, "excess_left": left})
        if left > PERSISTS:
            severity, harm = "warning", (f" It costs training: after {steps} steps on the first batch (a copy, your "
                                         f"optimizer) the loss is still {last:.4g}, {left:.0%} of the excess left.")
        else:
            harm = (f" A copy sheds it quickly ({steps} steps on the first batch: loss {first:.4g} -> {last:.4g}), "
                    "so no harm is measured: a hint, not a problem yet.")
    ctx.emit("LOS004",
             f"The untrained model's {_loss_name(call)} is {value:.4g}; a model that has learnt nothing gives about "
             f"{expected:.4g} ({words}). {cause}{harm}",
             location=_where(ctx, call, None), severity=severity, evidence=evidence, suggestions=fixes)
