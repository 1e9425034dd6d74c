"""Differential diagnosis of the compare step's symptom: the trained model no better than the majority
baseline, or clearly below a linear one (CMP001; CMP002 reads the same result).

The one-batch experiment (checks/diagnosis.py) cannot see causes that only show over many batches: a
model that memorises one batch can still learn the class prior of the whole set, stop far too early,
or break on batch statistics of two samples. Each intervention below trains a copy the way the compare
step trained its own (same samples, optimizer, seed; checks/trained_copy.py), with one change, and is
scored on the same evaluation samples; the first whose score no longer shows the symptom names the
cause (INTERFACE.md §3) with the numbers before and after:
  - ``class-imbalance``: training samples resampled so every class is drawn equally often;
  - ``training-length``: the given trained model (Setup(trained=True)) trained further, as a copy;
  - ``batch-size``: a tiny batch (<= SMALL_BATCH) made larger; only when training as long again four
    times at the user's batch size does not also remove it (then the copy was just short);
  - ``architecture``: a bottleneck (a hidden Linear of 2 units or fewer) widened.
Runs only when the symptom is seen, once per playbook run (memoised).
"""
from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from nndoctor import data as D
from nndoctor.checks.bottleneck import widened
from nndoctor.checks.trained_copy import EPOCHS, MAX_STEPS, MIN_STEPS, STEP, TRAIN_SECONDS, TRAIN_SHARE
from nndoctor.context import Context
from nndoctor.probes import scoring
from nndoctor.probes.evaluate import predict
from nndoctor.trainer import Epochs, Trainer, Variant

if TYPE_CHECKING:  # compare.py imports this module: only the type, never the module, comes back
    from nndoctor.checks.compare import Comparison

NOISE = 2.0  # standard errors a difference must exceed to count at all
CLEAR = 3.0  # standard errors for "clearly"
LINEAR_SHARE = 0.2  # a linear baseline "clearly beats" the model by at least this share of its own gain over majority
SMALL_BATCH = 8  # batches this small give noisy gradients and batch-norm statistics of a few samples
LARGER_BATCH = 32  # the batch the batch-size intervention trains with
CONTROL = 4  # the batch-size control trains this many times as long at the user's batch size


def below_baselines(cmp: Comparison, pred: np.ndarray) -> bool:
    """The CMP001 symptom on predictions ``pred``: not clearly above majority, or clearly below linear."""
    majority, linear = cmp.baseline("majority"), cmp.baseline("linear")
    if majority is None:
        return False
    if not cmp.beats(pred, majority.predictions, NOISE):
        return True
    if linear is None:
        return False
    gain = cmp.score(linear.predictions) - cmp.score(majority.predictions)
    margin = max(CLEAR * cmp.se(linear.predictions, pred), LINEAR_SHARE * gain)
    return cmp.score(linear.predictions) - cmp.score(pred) > margin


@dataclass
class Trial:
    """One copy trained with one change: its score on the evaluation samples."""

    change: str
    steps: int
    score: float
    pred: np.ndarray


@dataclass(frozen=True)
class Intervention:
    name: str
    cause: str
    advice: str
    # (ctx, cmp) -> the trial and, when it removes the symptom, the control's words ("" = none needed);
    # None when it does not apply
    trial: Callable[[Context, Comparison], tuple[Trial, str] | None]


def _train(ctx: Context, cmp: Comparison, inputs: Any, targets: torch.Tensor, batch_size: int, steps: int,
           label: str, variant: Variant | None = None) -> Trial | None:
    """A copy (of the model as given, or changed by ``variant``) trained for ``steps`` on these samples,
    scored like the compare step's."""
    stream = Epochs(inputs, targets, batch_size, ctx.device, seed=ctx.seed)
    seconds = min(TRAIN_SECONDS, TRAIN_SHARE * ctx.budget.remaining())
    run = Trainer(ctx, stream, variant, seed=ctx.seed, give_up=float("inf"),
                  progress=lambda message: ctx.progress(f"{STEP}: {label}: {message}"))
    run.advance(steps, time.monotonic() + seconds)
    if run.status in ("crashed", "non-finite") or run.steps == 0:
        return None
    outputs = predict(run.model.eval(), cmp.split.eval_inputs, ctx.device)
    pred = scoring.predictions(cmp.kind, outputs, ctx.setup.loss_fn, len(cmp.y_eval)) if outputs is not None else None
    if pred is None or not math.isfinite(cmp.score(pred)):
        return None
    return Trial(label, run.steps, cmp.score(pred), pred)


def _user_batch(ctx: Context) -> int:
    return max(1, D.batch_len(D.split_batch(ctx.first_batch())[0]))


def _planned(cmp: Comparison, batch_size: int) -> int:
    """The steps the compare step trains a copy for (or did): the same plan for every intervention."""
    if cmp.training is not None:
        return cmp.training.steps
    per_epoch = max(1, len(cmp.split.train_targets) // batch_size)
    return int(min(MAX_STEPS, max(MIN_STEPS, EPOCHS * per_epoch)))


# ----- the interventions ------------------------------------------------------------------------------
def _balanced(ctx: Context, cmp: Comparison) -> tuple[Trial, str] | None:
    """Every class drawn equally often: each class's samples repeated up to the largest class's count."""
    if cmp.kind not in ("classification", "binary"):
        return None
    labels = scoring.target_labels(cmp.kind, cmp.split.train_targets)
    if labels is None:
        return None
    labels = labels.reshape(len(labels), -1)[:, 0].astype(np.int64)
    counts = np.bincount(labels)
    present = np.flatnonzero(counts)
    if len(present) < 2 or counts[present].max() < scoring.IMBALANCE_RATIO * counts[present].min():
        return None
    top = int(counts.max())
    rows = np.concatenate([np.resize(np.flatnonzero(labels == c), top) for c in present])  # oversampled
    rows = torch.from_numpy(rows)
    batch = _user_batch(ctx)
    ratio = f"{int(counts[present].max())}:{int(counts[present].min())}"
    trial = _train(ctx, cmp, D.index(cmp.split.train_inputs, rows), cmp.split.train_targets[rows], batch,
                   _planned(cmp, batch), f"classes resampled to equal frequency (they were {ratio})")
    return (trial, "") if trial is not None else None


def _longer(ctx: Context, cmp: Comparison) -> tuple[Trial, str] | None:
    """The model as given (trained=True), trained further on a copy with the user's optimizer and batch."""
    if cmp.training is not None:  # nndoctor chose the copy's length, not the user: nothing to blame
        return None
    batch = _user_batch(ctx)
    steps = _planned(cmp, batch)
    trial = _train(ctx, cmp, cmp.split.train_inputs, cmp.split.train_targets, batch, steps,
                   f"the given model trained {steps} steps further")
    return (trial, "") if trial is not None else None


def _larger_batch(ctx: Context, cmp: Comparison) -> tuple[Trial, str] | None:
    """A tiny batch made LARGER_BATCH, the same number of steps; the control trains CONTROL times as long
    at the user's batch size: when that also removes the symptom, the copy was only short."""
    batch = _user_batch(ctx)
    n = len(cmp.split.train_targets)
    if cmp.training is None or batch > SMALL_BATCH or n < 2 * LARGER_BATCH:
        return None
    steps = _planned(cmp, batch)
    trial = _train(ctx, cmp, cmp.split.train_inputs, cmp.split.train_targets, LARGER_BATCH, steps,
                   f"batch size {batch} -> {LARGER_BATCH}")
    if trial is None or below_baselines(cmp, trial.pred):
        return (trial, "") if trial is not None else None
    control = _train(ctx, cmp, cmp.split.train_inputs, cmp.split.train_targets, batch, CONTROL * steps,
                     f"batch size {batch}, {CONTROL * steps} steps")
    if control is None or control.steps < 2 * steps or not below_baselines(cmp, control.pred):
        return None  # training longer at the user's batch also removes it (or time cut the control short)
    return trial, f"; at batch size {batch} even {control.steps} steps leave it at {control.score:.3f}"


def _wider(ctx: Context, cmp: Comparison) -> tuple[Trial, str] | None:
    """A bottleneck (checks/bottleneck.py) widened, trained like the compare step's copy: a width-2 layer
    can memorise one batch (no one-batch symptom) yet leave the whole set below a linear baseline."""
    found = widened(ctx.fresh_model(), ctx.seed)
    if cmp.training is None or found is None:  # a given trained model: a widened copy starts over, no comparison
        return None
    change, variant = found
    batch = _user_batch(ctx)
    trial = _train(ctx, cmp, cmp.split.train_inputs, cmp.split.train_targets, batch, _planned(cmp, batch), change,
                   variant)
    return (trial, "") if trial is not None else None


INTERVENTIONS = [
    Intervention("class balance", "class-imbalance", "Weight the loss by inverse class frequency "
                 "(`nn.CrossEntropyLoss(weight=...)`, `pos_weight`) or sample classes equally "
                 "(`torch.utils.data.WeightedRandomSampler`).", _balanced),
    Intervention("training length", "training-length", "Train for more steps/epochs: the model was still "
                 "learning when training stopped.", _longer),
    Intervention("batch size", "batch-size", "Use a larger batch: the gradient noise and the batch-norm statistics "
                 "of a tiny batch are what break training (a lower learning rate tames the noise too; GroupNorm/"
                 "LayerNorm do not depend on the batch).", _larger_batch),
    Intervention("width", "architecture", "Widen the bottleneck layer.", _wider),
]


# ----- the diagnosis ------------------------------------------------------------------------------------
def diagnose(ctx: Context, cmp: Comparison) -> dict[str, Any]:
    """Once per run: ``{"cause", "verified_fix", "advice", "words"}`` for the first intervention that removes
    the symptom, else ``{"tried": [...], "words": ...}`` (empty when none applied)."""
    return ctx.measure("compare_causes", lambda: _diagnose(ctx, cmp))


def _diagnose(ctx: Context, cmp: Comparison) -> dict[str, Any]:
    tried: list[dict[str, Any]] = []
    for intervention in INTERVENTIONS:
        if ctx.budget.remaining() <= 0:
            break
        try:
            outcome = intervention.trial(ctx, cmp)
        except Exception:  # noqa: BLE001 - the change does not apply to this model or data
            continue
        if outcome is None:
            continue
        trial, control = outcome
        before = {"score": cmp.value, "steps": cmp.training.steps if cmp.training else 0}
        after = {"score": trial.score, "steps": trial.steps}
        removed = not below_baselines(cmp, trial.pred)
        tried.append({"change": trial.change, "cause": intervention.cause, "before": before, "after": after,
                      "verified": removed})
        if removed:
            summary = f"{trial.change}: {cmp.metric.replace('_', ' ')} {cmp.value:.3f} -> {trial.score:.3f}"
            fix = {**tried[-1], "summary": summary + control}
            return {"cause": intervention.cause, "verified_fix": fix, "advice": intervention.advice,
                    "words": (f" Differential diagnosis (one change at a time on a copy, same samples and seed): "
                              f"{summary}, no longer below the baselines{control}. Cause: {intervention.cause}.")}
    words = ""
    if tried:
        words = " Ruled out (each tried on a copy): " + "; ".join(
            f"{t['change']} ({cmp.metric.replace('_', ' ')} {t['after']['score']:.3f})" for t in tried) + "."
    return {"tried": tried, "words": words}


def confirmed_cause(ctx: Context, evidence: dict[str, Any], cmp: Comparison | None = None,
                    suggestions: list[str] | None = None) -> str:
    """The cause the one-batch diagnosis (OFB findings) confirmed, else, given ``cmp``, the one this step's
    interventions confirm; carried into ``evidence`` (its advice first in ``suggestions``). Returns the
    sentence that says so ("" for none)."""
    for f in ctx.findings:
        if f.code.startswith("OFB") and f.evidence.get("cause") and f.evidence.get("verified_fix"):
            evidence["cause"], evidence["verified_fix"] = f.evidence["cause"], f.evidence["verified_fix"]
            fix = f.evidence["verified_fix"].get("summary") or f.evidence["verified_fix"].get("fix", "")
            return f" Cause confirmed on one batch ({f.code}): {f.evidence['cause']} ({fix})."
    if cmp is None:
        return ""
    found = diagnose(ctx, cmp)
    if "cause" in found:
        evidence["cause"], evidence["verified_fix"] = found["cause"], found["verified_fix"]
        if suggestions is not None:
            suggestions.insert(0, found["advice"])
        return found["words"]
    if found["tried"]:
        evidence["tried"] = found["tried"]
    return ""
