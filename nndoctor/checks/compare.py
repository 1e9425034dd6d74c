"""Step 4, "compare to known results": a model can train without errors and still be wrong.

The copy trained for a few epochs within the budget (checks/trained_copy.py; with ``Setup(trained=True)``
the model as given) is compared, on the same samples and metric, with simple baselines fitted on the
user's own data (CMP001) and with itself on zeroed or shuffled inputs (CMP002); ``known_results.py`` holds
the comparisons with the user's known results ranked by trust (CMP003) and, layer by layer, with a reference
implementation (CMP004). Differences count only beyond a few standard errors of the evaluation set.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from nndoctor import data as D
from nndoctor.checks import SkipCheck, check
from nndoctor.checks.compare_causes import CLEAR, LINEAR_SHARE, NOISE, confirmed_cause  # thresholds live there
from nndoctor.context import Context
from nndoctor.probes import scoring
from nndoctor.probes.activations import RecordActivations
from nndoctor.probes.baselines import Baseline, fit_baselines
from nndoctor.checks.trained_copy import MIN_STEPS, STEP, Training, comparison_samples, trained_copy
from nndoctor.probes.evaluate import Split, predict
from nndoctor.spec import KnownResult


@dataclass
class Comparison:
    """The model and the baselines scored on the same evaluation samples."""

    kind: str
    metric: str
    split: Split
    y_eval: np.ndarray
    model: nn.Module  # the trained copy (or the copy of the trained model), in eval mode
    outputs: torch.Tensor  # (N, ...) its per-sample outputs on the evaluation samples
    pred: np.ndarray
    baselines: list[Baseline]
    features: str
    training: Training | None  # None: the model was evaluated as given (trained=True)
    user_metric: float | None
    history: list[tuple[int, float]]  # (step, evaluation score) along the copy's training

    def score(self, pred: np.ndarray) -> float:
        return scoring.score(self.metric, pred, self.y_eval)

    def se(self, pred: np.ndarray, other: np.ndarray | None = None) -> float:
        return scoring.standard_error(self.metric, pred, self.y_eval, other)

    @property
    def value(self) -> float:
        return self.score(self.pred)

    def baseline(self, role: str) -> Baseline | None:
        return next((b for b in self.baselines if b.kind == role and b.predictions is not None), None)

    def beats(self, pred: np.ndarray, other: np.ndarray, sigmas: float) -> bool:
        """``pred`` scores higher than ``other`` by more than ``sigmas`` standard errors of the difference."""
        return self.score(pred) - self.score(other) > sigmas * self.se(pred, other) + 1e-12

    @property
    def has_signal(self) -> bool:
        """Some baseline clearly beats majority/mean: the targets are predictable from the inputs."""
        majority = self.baseline("majority")
        return majority is not None and any(
            self.beats(b.predictions, majority.predictions, CLEAR) for b in self.baselines
            if b.kind != "majority" and b.predictions is not None)

    @property
    def still_improving(self) -> bool:
        """The copy's evaluation score rose clearly over the second half of its training."""
        if self.training is None or len(self.history) < 2:
            return False
        mid = self.history[(len(self.history) - 1) // 2][1]
        return self.history[-1][1] - mid > NOISE * self.se(self.pred)

    @property
    def unsettled(self) -> str:
        """Why the copy's score may not be final yet ("" when it is)."""
        if self.training is None:
            return ""
        if self.training.truncated:
            return "the time budget stopped the copy's training early"
        return "the copy was still improving when its training ended" if self.still_improving else ""

    @property
    def barely_trained(self) -> bool:
        """The time budget stopped the copy so early that its score says little (a large model, a slow machine)."""
        return self.training is not None and self.training.truncated and self.training.steps < MIN_STEPS // 2

    @property
    def how_trained(self) -> str:
        t = self.training
        if t is None:
            seen = ", which has seen these samples in training: its score is optimistic" if self.split.held_out else ""
            return f"the model as given (trained=True{seen})"
        cut = f", stopped by the time budget before the planned {t.planned_steps}" if t.truncated else ""
        return f"a copy trained for {t.steps} steps ({t.epochs:.1f} epochs, {t.seconds:.1f} s{cut})"


# ----- the shared measurement -------------------------------------------------------------------
def comparison(ctx: Context) -> Comparison:
    """Train/evaluate once per run; every CMP check reads the same result (or the same reason to skip)."""
    return ctx.measure_or_skip("comparison", lambda: _measure(ctx))


def _measure(ctx: Context) -> Comparison | str:
    if ctx.setup.step is not None:
        return ("with Setup(step=...) nndoctor cannot tell the model's outputs from the targets; give loss_fn and "
                "(inputs, targets) batches to compare with baselines")
    kind = ctx.task.kind
    if kind not in ("classification", "binary", "multilabel", "regression"):
        return "the task could not be inferred; set Setup(task=...)"
    split = comparison_samples(ctx)
    if split is None:
        return "batches are not (inputs, targets) tensors that can be concatenated"
    y_train = scoring.target_labels(kind, split.train_targets)
    y_eval = scoring.target_labels(kind, split.eval_targets)
    if y_train is None or y_eval is None or len(y_eval) < 2:
        return "the targets are not one label or value per sample (e.g. per-token labels)"
    metric = scoring.primary_metric(kind, y_train)
    trained = trained_copy(ctx)
    if isinstance(trained, str):
        return trained
    model, training = trained.model, trained.training
    outputs, pred = _predict(ctx, kind, model, split.eval_inputs)
    if pred is None:
        return f"the model's outputs do not fit {kind} targets of shape {tuple(split.eval_targets.shape)}"
    ctx.progress(f"{STEP}: fitting baselines")
    baselines, features = fit_baselines(kind, split.train_inputs, y_train, split.eval_inputs, seed=ctx.seed)
    curve = [(s, _predictions(ctx, kind, out, len(y_eval))) for s, out in (training.checkpoints if training else [])]
    history = [(step, scoring.score(metric, p, y_eval) if p is not None else math.nan) for step, p in curve]
    result = Comparison(kind, metric, split, y_eval, model, outputs, pred, baselines, features, training,
                        _user_metric(ctx, outputs, split.eval_targets), history)
    ctx.extras["compare"] = _table(ctx, result)
    return result


def _predict(ctx: Context, kind: str, model: nn.Module, inputs: Any) -> tuple[torch.Tensor | None, np.ndarray | None]:
    """The model's per-sample outputs on ``inputs`` and those outputs as predictions (None when they do not fit)."""
    outputs = predict(model, inputs, ctx.device)
    return outputs, _predictions(ctx, kind, outputs, D.batch_len(inputs))


def _predictions(ctx: Context, kind: str, outputs: torch.Tensor | None, n: int) -> np.ndarray | None:
    return scoring.predictions(kind, outputs, ctx.setup.loss_fn, n) if outputs is not None else None


def _user_metric(ctx: Context, outputs: torch.Tensor, targets: torch.Tensor) -> float | None:
    if ctx.setup.metric is None:
        return None
    try:
        value = float(ctx.setup.metric(outputs.to(ctx.device), targets.to(ctx.device)))
    except Exception:  # the metric expects another form of outputs: the built-in metric stands in
        return None
    return value if math.isfinite(value) else None


def _chance(cmp: Comparison) -> float | None:
    """The score of uniform random guessing, for the table."""
    if cmp.kind in ("binary", "multilabel"):
        return 0.5
    if cmp.kind == "classification":
        return 1.0 / max(2, cmp.outputs.shape[1] if cmp.outputs.ndim == 2 else len(np.unique(cmp.y_eval)))
    return None


def _table(ctx: Context, cmp: Comparison) -> dict[str, Any]:
    """The comparison table for the report: every row in the same metric, on the same samples."""
    rows = [{"name": "model", "kind": "model", "value": cmp.value, "se": cmp.se(cmp.pred)}]
    for b in cmp.baselines:
        rows.append({"name": b.name, "kind": "baseline", "value": cmp.score(b.predictions) if b.predictions is not None
                     else None, "note": b.skipped})
    chance = _chance(cmp)
    if chance is not None:
        rows.append({"name": "chance (uniform guessing)", "kind": "chance", "value": chance})
    for kr in sorted(ctx.setup.known_results, key=lambda k: k.trust_rank):
        rows.append({"name": f"known result ({kr.source})", "kind": "known", "metric": kr.metric,
                     "value": in_metric(kr, cmp.metric), "reported": kr.value, "note": kr.note})
    table = {"metric": cmp.metric, "split": cmp.split.description, "samples": len(cmp.y_eval),
             "model": cmp.how_trained, "features": cmp.features, "rows": rows}
    if cmp.user_metric is not None:
        table["user_metric"] = cmp.user_metric
    if cmp.training is not None:
        table["learning_curve"] = cmp.history
    return table


def in_metric(kr: KnownResult, metric: str) -> float | None:
    """A known result expressed in the table's metric (percentages and error rates converted), else None."""
    canon, value = scoring.canonical_metric(kr.metric), kr.value
    if canon in ("accuracy", "balanced_accuracy", "error_rate") and 1 < value <= 100:
        value /= 100
    if canon == "error_rate" and metric == "accuracy":
        return 1.0 - value
    return value if canon == metric else None


def _brief(cmp: Comparison) -> str:
    """'accuracy on validation data (360 samples)'."""
    return f"{cmp.metric.replace('_', ' ')} on {cmp.split.description}"


def _rows(cmp: Comparison) -> list[str]:
    return [f"{b.name} {cmp.score(b.predictions):.3f}" for b in cmp.baselines if b.predictions is not None]


# ----- CMP001 below baseline ------------------------------------------------------------------------
@check("beats-baselines", step="compare", codes=("CMP001",))
def beats_baselines(ctx: Context) -> None:
    """The model must beat majority/mean clearly, and a plain linear model must not clearly beat it."""
    cmp = comparison(ctx)
    majority, linear = cmp.baseline("majority"), cmp.baseline("linear")
    evidence = {"metric": cmp.metric, "split": cmp.split.description, "model": cmp.value, "trained": cmp.how_trained,
                "table": list(ctx.extras.get("compare", {}).get("rows", []))}
    if majority is None:
        raise SkipCheck("the majority/mean baseline could not be fitted")
    gap_se = cmp.se(cmp.pred, majority.predictions)
    short = cmp.unsettled
    bottleneck = _narrow_point(ctx, cmp.model)
    if not cmp.beats(cmp.pred, majority.predictions, NOISE):
        signal = cmp.has_signal
        margin = (f"a real gain must exceed {NOISE:g} standard errors = {NOISE * gap_se:.3f}" if gap_se > 0 else
                  "it makes exactly the same predictions")
        message = (f"The model scores {cmp.value:.3f} {_brief(cmp)}, no better than {majority.name} "
                   f"({cmp.score(majority.predictions):.3f}; {margin}). Model: {cmp.how_trained}. "
                   f"Baselines: {', '.join(_rows(cmp))}. ")
        if signal:
            message += "The baselines find signal in the inputs that the model does not use."
            suggestions = [bottleneck[1]] if bottleneck else []
            suggestions += ["Look for what discards information: a layer too narrow, a slice or mask that drops "
                            "input features, a detached input, a loss that does not fit the targets."]
        else:
            message += ("No baseline does better either: the targets look unrelated to the inputs (see DAT004).")
            suggestions = ["Check that inputs and labels stay paired through loading, shuffling and augmentation "
                           "(index both with the same permutation), and that the labels are the right column."]
        if short:
            message += f" Note: {short}."
            suggestions.append("Pass your trained model with Setup(trained=True) for a definite verdict.")
        if cmp.barely_trained:
            message += " The copy trained too briefly for a verdict."
        evidence.update(majority=cmp.score(majority.predictions), noise=NOISE * gap_se, data_has_signal=signal)
        # a copy still improving has not shown harm yet: info, unless the one-batch diagnosis confirmed a cause
        confirmed = confirmed_cause(ctx, evidence, cmp, suggestions)
        message += confirmed
        severity = "info" if cmp.barely_trained or (short and not confirmed) else "error"
        ctx.emit("CMP001", message, severity=severity,
                 location=bottleneck[0] if (signal and bottleneck) else ("model" if signal else "train_data"),
                 evidence=evidence, suggestions=suggestions)
        return
    if linear is not None:
        gain = cmp.score(linear.predictions) - cmp.score(majority.predictions)
        lead = cmp.score(linear.predictions) - cmp.value
        margin = max(CLEAR * cmp.se(linear.predictions, cmp.pred), LINEAR_SHARE * gain)
        if lead > margin:
            message = (f"A plain {linear.name} on the flattened inputs scores {cmp.score(linear.predictions):.3f} "
                       f"{_brief(cmp)}, clearly above the model's {cmp.value:.3f} (lead {lead:.3f}, more than "
                       f"{margin:.3f}: {CLEAR:g} standard errors or {LINEAR_SHARE:.0%} of the linear model's gain over "
                       f"{majority.name}). Model: {cmp.how_trained}.")
            suggestions = [bottleneck[1]] if bottleneck else []
            suggestions.append("A deep model should at least match a linear one: look for an information bottleneck "
                               "(a layer narrower than the number of outputs), a slice or mask that drops features, "
                               "or too strong regularisation.")
            evidence.update(linear=cmp.score(linear.predictions), lead=lead, margin=margin,
                            still_improving=cmp.still_improving)
            confirmed = confirmed_cause(ctx, evidence, cmp, suggestions)
            if short and not confirmed:  # a change that removed it in as many steps is no hint
                message += f" Only a hint: {short}."
                suggestions.append("Train longer, or pass your trained model with Setup(trained=True).")
            message += confirmed
            ctx.emit("CMP001", message, severity="error" if confirmed else "info" if short else "warning",
                     location=bottleneck[0] if bottleneck else "model", evidence=evidence, suggestions=suggestions)
            return
    ctx.emit("CMP001", f"The model ({cmp.value:.3f} {_brief(cmp)}) beats {majority.name} and is not clearly below "
                       f"the other baselines ({', '.join(_rows(cmp))}). Model: {cmp.how_trained}.",
             severity="info", location="model", evidence=evidence)


def _narrow_point(ctx: Context, model: nn.Module) -> tuple[str, str] | None:
    """(location, sentence) of where information visibly narrows: a layer seeing only a slice of the
    input, or a layer narrower than the model's output. From the shapes step 1 recorded."""
    calls = ctx.measure("module_calls", lambda: None)
    if not calls:
        return None
    modules = dict(model.named_modules())
    def width(shape: tuple[int, ...]) -> int:
        return math.prod(shape[1:]) if len(shape) > 1 else 1

    root = next((c for c in calls if c[0] == ""), None)
    if root is None or not root[2] or not root[3]:
        return None
    widest_input, out_width = max(width(s) for s in root[2]), width(root[3][0])
    leaves = [c for c in calls if c[0] and c[0] in modules and not any(True for _ in modules[c[0]].children())]
    if leaves and leaves[0][2] and width(leaves[0][2][0]) * 2 <= widest_input:
        path, kind, inputs, _ = leaves[0]
        return (f"model.{path}", f"The first layer, model.{path} ({kind}), receives only {width(inputs[0])} of the "
                                 f"{widest_input} values of each input sample: check the slicing before it.")
    for path, kind, _, outputs in leaves[:-1]:
        if outputs and width(outputs[0]) < out_width:
            return (f"model.{path}", f"model.{path} ({kind}) passes on only {width(outputs[0])} value(s) per sample, "
                                     f"fewer than the {out_width} outputs the model must produce: widen it.")
    return None


# ----- CMP002 input-independent ---------------------------------------------------------------------
@check("depends-on-inputs", step="compare", codes=("CMP002",))
def depends_on_inputs(ctx: Context) -> None:
    """The model must do clearly better with its real inputs than with zeroed or shuffled ones."""
    cmp = comparison(ctx)
    inputs, n = cmp.split.eval_inputs, len(cmp.y_eval)
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(ctx.seed))
    ablations = {"inputs zeroed": D.map_tensors(torch.zeros_like, inputs), "inputs shuffled across samples":
                 D.index(inputs, perm)}
    scores: dict[str, tuple[float, float]] = {}
    for name, ablated in ablations.items():
        pred = _predict(ctx, cmp.kind, cmp.model, ablated)[1]
        if pred is not None and math.isfinite(cmp.score(pred)):
            scores[name] = (cmp.score(pred), cmp.se(cmp.pred, pred))
            ctx.extras.setdefault("compare", {}).setdefault("rows", []).append(
                {"name": f"model, {name}", "kind": "ablation", "value": scores[name][0]})
    constant = _same_for_every_sample(cmp.outputs)
    as_good = [name for name, (value, se) in scores.items() if cmp.value - value <= NOISE * se + 1e-12]
    evidence = {"metric": cmp.metric, "split": cmp.split.description, "model": cmp.value,
                "ablations": {k: v[0] for k, v in scores.items()}, "outputs_identical_for_every_sample": constant}
    if not constant and not (as_good and cmp.has_signal and not cmp.barely_trained):
        return
    location, where = _where_input_is_lost(cmp.model, D.index(inputs, slice(0, 64)), ctx.device)
    narrow = _narrow_point(ctx, cmp.model) if location == "model" else None
    if narrow:
        location, where = narrow
    evidence["lost_at"] = location
    if constant:
        message = (f"The model's outputs are identical for all {n} evaluation samples: it ignores its inputs. "
                   f"It scores {cmp.value:.3f} {_brief(cmp)}")
    else:
        message = (f"The model scores {cmp.value:.3f} {_brief(cmp)} and does as well with its "
                   f"{' or '.join(as_good)} ({', '.join(f'{scores[k][0]:.3f}' for k in as_good)}), although the "
                   "baselines show the inputs carry signal")
    confirmed = confirmed_cause(ctx, evidence, cmp)
    ctx.emit("CMP002", f"{message}. {where}{confirmed}", severity="error" if constant or confirmed else "warning",
             location=location,
             evidence=evidence,
             suggestions=["Check what the forward pass does to the input before the first layer: a mask or "
                          "multiplication that zeroes it, a slice that keeps only a few features, a `.detach()` or "
                          "a constant used in its place.",
                          "Print `model(x1) - model(x2)` for two different samples: it should not be zero."])


def _same_for_every_sample(t: torch.Tensor) -> bool:
    """Every row equal to the first, up to float rounding (and at least two rows)."""
    if t.ndim == 0 or len(t) < 2:
        return False
    t = t.detach().float()
    return float((t - t[:1]).abs().max()) <= 1e-5 * max(float(t.abs().max()), 1e-30)


def _where_input_is_lost(model: nn.Module, inputs: Any, device: torch.device) -> tuple[str, str]:
    """The first layer of the final run of layers whose outputs no longer depend on the sample."""
    n = D.batch_len(inputs)
    with torch.no_grad(), RecordActivations(model) as rec:
        D.call_model(model, D.to_device(inputs, device))
    def per_sample_constant(tensors: list[torch.Tensor]) -> bool:
        rows = [t for t in tensors if t.ndim >= 1 and len(t) == n]
        return bool(rows) and all(_same_for_every_sample(t) for t in rows)

    leaves = sorted((c for c in rec.finished if c.is_leaf and c.outputs), key=lambda c: c.called)
    start = len(leaves)
    while start > 0 and per_sample_constant(leaves[start - 1].outputs):
        start -= 1
    if start == len(leaves):
        return "model", "No single layer makes the outputs constant: they depend on the input only weakly."
    first = leaves[start]
    path = f"model.{first.path}"
    if per_sample_constant(first.inputs):
        return path, (f"{path} ({type(first.module).__name__}) already receives the same input for every sample: "
                      "the code that feeds it discards the input.")
    return path, f"{path} ({type(first.module).__name__}) turns varying inputs into the same output for every sample."
