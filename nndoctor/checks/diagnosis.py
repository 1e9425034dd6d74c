"""Differential diagnosis of a symptom seen on the single-batch experiment (a plateau, a slow descent):
the interventions below, as data, each a controlled experiment on a copy (same batch, same seed, the
same fixed budget of steps), run cheapest and most likely first until one removes the symptom (the copy
reaches the goal). The one that does names the cause (INTERFACE.md §3 vocabulary) with before/after
numbers; when none does, every one tried is listed as ruled out, with its numbers.

Runs only when a symptom is seen (the caller decides), so a healthy model's check pays nothing.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any, Callable, Iterator

import torch
from torch import nn

from nndoctor import data as D
from nndoctor import fixes
from nndoctor.checks.bottleneck import widened
from nndoctor.checks.lr_range import LrRange, lr_range
from nndoctor.checks.overfit_experiment import UNSTABLE, Experiment, num, outcome_words
from nndoctor.checks.verified_fixes import before_after, fix_trial
from nndoctor.probes import curve
from nndoctor.probes.single_batch import OneBatch
from nndoctor.trainer import FINISHED, Variant, has_dropout, reinitialised, without_dropout, without_weight_decay

# The cause a mechanical fix of an earlier finding confirms when it removes the symptom.
FIX_CAUSES = {"LOS001": "activation", "LOS002": "loss", "DAT001": "preprocessing", "MOD001": "train-eval-mode",
              "GRD002": "optimizer", "GRD003": "learning-rate"}
_OUTPUT_ACTIVATIONS = (nn.Sigmoid, nn.Tanh, nn.ReLU, nn.ReLU6, nn.Hardtanh, nn.Softplus, nn.Hardsigmoid)
RAW_SCALE = 20.0  # inputs/targets beyond this magnitude (pixels 0-255, prices) are not standardised
REMOVES = 0.25  # without reaching the goal in the budget, a change that leaves at most this share of the
# final error removes the symptom (a sigmoid output on standardised targets: 0.52 -> 0.047)


@dataclass(frozen=True)
class Intervention:
    """One controlled change: the cause it confirms, when it applies, the variant(s) it trains."""

    name: str
    cause: str
    advice: str
    trials: Callable[[Experiment], Iterator[tuple[str, Variant | OneBatch]]]  # (what changed, variant or a done run)


@dataclass
class Diagnosis:
    cause: str | None = None
    change: str = ""
    advice: str = ""
    verified_fix: dict[str, Any] | None = None
    run: OneBatch | None = None
    tried: list[dict[str, Any]] = field(default_factory=list)  # before/after of every intervention run
    ruled_out: list[str] = field(default_factory=list)  # "change (outcome)" for each that did not remove it
    helped: list[str] = field(default_factory=list)  # clearly better, without reaching the goal

    def words(self) -> str:
        if self.cause is not None:
            return (f" Differential diagnosis (one change at a time on a copy, same batch and seed): {self.change} "
                    f"removes it ({outcome_words(self.run)}). Cause: {self.cause}.")
        if not self.ruled_out:
            return ""
        text = " Ruled out (each tried on a copy, same batch and seed): " + "; ".join(self.ruled_out) + "."
        if self.helped:
            text += " Helped without removing it: " + ", ".join(self.helped) + "."
        return text


# ----- the interventions ------------------------------------------------------------------------------
def _learning_rate(exp: Experiment) -> Iterator[tuple[str, Variant | OneBatch]]:
    """The range test over several decades (lr_range.py): its confirmed suggestion, trained to the goal."""
    sweep = lr_range(exp)
    if isinstance(sweep, LrRange) and sweep.suggested != 0 and sweep.confirmation is not None:
        factor = 10.0 ** sweep.suggested
        yield (f"lr {num(sweep.base_lr)} -> {num(sweep.lr(sweep.suggested))} ({factor:g}x, best of "
               f"{len(sweep.runs)} rates tried)", sweep.confirmation)


def _optimizer(exp: Experiment) -> Iterator[tuple[str, Variant]]:
    if exp.grads.steps and not exp.grads.update_norm.any():  # the optimizer never moved a parameter
        trial = fixes.rebuilt_optimizer(exp.ctx)
        yield trial.description, trial.after


def _weight_decay(exp: Experiment) -> Iterator[tuple[str, Variant]]:
    decay = max((g.get("weight_decay") or 0 for g in exp.baseline.optimizer.param_groups), default=0)
    if decay:
        yield f"weight decay {num(decay)} -> 0", without_weight_decay()


def _dropout(exp: Experiment) -> Iterator[tuple[str, Variant]]:
    if has_dropout(exp.baseline.model):
        yield "dropout off", without_dropout()


def _initialisation(exp: Experiment) -> Iterator[tuple[str, Variant]]:
    """Default re-initialisation, where a weight matrix starts constant (all zeros, all ones): no symmetry
    breaking, so its units stay identical."""
    constant = [name for name, p in exp.ctx.fresh_model().named_parameters()
                if p.ndim >= 2 and p.numel() > 1 and bool((p == p.reshape(-1)[0]).all())]
    if constant:
        yield f"default re-initialisation ({', '.join(constant[:3])} started constant)", reinitialised(exp.ctx.seed)


def _output_activation(exp: Experiment) -> Iterator[tuple[str, Variant]]:
    """The last layer's activation removed, where it bounds a regression output or clips logits."""
    if exp.kind not in ("regression", "classification"):
        return
    leaves = [(n, m) for n, m in exp.ctx.fresh_model().named_modules() if n and not list(m.children())]
    if not leaves or not isinstance(leaves[-1][1], _OUTPUT_ACTIVATIONS):
        return
    path, module = leaves[-1]
    yield (f"model.{path} ({type(module).__name__}) on the output removed",
           Variant(label=f"without model.{path}", edit=lambda m: fixes.replace_module(m, path, nn.Identity())))


def _targets(exp: Experiment) -> Iterator[tuple[str, Variant]]:
    """Regression targets standardised, where they are far from unit scale (the goal is scale-free: 1 - R²)."""
    pair = exp.ctx.pair(exp.batch)
    if exp.kind != "regression" or pair is None or not isinstance(pair[1], torch.Tensor):
        return
    y = pair[1].float()
    if len(y) < 2:
        return
    mean, std = y.mean(0), y.std(0).clamp_min(1e-12)
    if float(y.abs().max()) > RAW_SCALE:
        yield (f"targets standardised (they span {num(float(y.min()))} to {num(float(y.max()))})",
               Variant(label="standardised targets", targets=lambda t: ((t.float() - mean.to(t.device)) /
                                                                         std.to(t.device)).to(t.dtype)))


def _inputs(exp: Experiment) -> Iterator[tuple[str, Variant]]:
    pair = exp.ctx.pair(exp.batch)
    if pair is None or not isinstance(pair[0], torch.Tensor) or not pair[0].is_floating_point():
        return
    if float(pair[0].abs().max()) > RAW_SCALE:
        yield (f"inputs standardised (raw values up to {num(float(pair[0].abs().max()))})",
               Variant(label="standardised inputs", inputs=lambda x: D.map_tensors(fixes._standardise, x)))


SCALED = ("standardised inputs", "standardised targets")  # the labels of the scale interventions' variants


def _scale_and_rate(exp: Experiment) -> Iterator[tuple[str, OneBatch]]:
    """Standardising and the learning rate together, where a raw scale was standardised and neither change
    alone removed the symptom: the user's rate was tuned to the raw scale's gradients (targets in the
    thousands under SGD), so it is wrong for the standardised copy, and no rate helps the raw one. The range
    test runs again on the standardised copy (the same batch, transformed as the scale interventions do);
    when its confirmed rate reaches the goal, the scale is the root and the fix is both changes."""
    runs = [exp.runs[label] for label in SCALED if label in exp.runs]
    pair = exp.ctx.pair(exp.batch)
    if not runs or pair is None or exp.baseline.lr is None or not exp.baseline.lr > 0:
        return
    inputs = next((r.variant.inputs for r in runs if r.variant.inputs is not None), None)
    targets = next((r.variant.targets for r in runs if r.variant.targets is not None), None)
    start = runs[0] if len(runs) == 1 else exp.run(Variant(label="standardised inputs and targets", inputs=inputs,
                                                             targets=targets))
    if start.status in FINISHED:
        return
    scaled = (inputs(pair[0]) if inputs else pair[0], targets(pair[1]) if targets else pair[1])
    # the standardised run plays the baseline of a range test of its own (its runs kept apart from the raw ones)
    sub = replace(exp, batch=scaled, baseline=start, baseline_steps=start.steps, sweep="not run",
                  runs={start.variant.label: start}, curves={}, lower_rates_tried=[])
    sweep = lr_range(sub)
    if isinstance(sweep, LrRange) and sweep.suggested != 0 and sweep.confirmation is not None:
        what = " and ".join(c for c, _ in _scale_changes(exp))
        yield (f"{what}, and lr {num(sweep.base_lr)} -> {num(sweep.lr(sweep.suggested))} "
               f"({10.0 ** sweep.suggested:g}x, best of {len(sweep.runs)} rates tried on the standardised copy)",
               sweep.confirmation)


def _scale_changes(exp: Experiment) -> list[tuple[str, Variant]]:
    return [*_inputs(exp), *_targets(exp)]


def _width(exp: Experiment) -> Iterator[tuple[str, Variant]]:
    """A hidden Linear of NARROW units or fewer between wider layers, widened (checks/bottleneck.py)."""
    found = widened(exp.ctx.fresh_model(), exp.ctx.seed)
    if found is not None:
        yield found


INTERVENTIONS = [  # cheapest and most likely first; the first that removes the symptom ends the search
    # raw scales first (alone, then with the rate retuned for the standardised copy): they only apply when
    # seen, and a rate tuned to raw scales hides them
    Intervention("targets scale", "preprocessing", "Standardise the regression targets (and invert for "
                 "predictions).", _targets),
    Intervention("inputs scale", "preprocessing", "Standardise the inputs.", _inputs),
    Intervention("scale and learning rate", "preprocessing", "Standardise the inputs/targets (invert for "
                 "predictions) and retune the learning rate for the new scale: about the confirmed one.",
                 _scale_and_rate),
    Intervention("learning rate", "learning-rate", "Set the learning rate to about the confirmed one.",
                 _learning_rate),
    Intervention("optimizer over the model", "optimizer", "Build the optimizer over this model's parameters.",
                 _optimizer),
    Intervention("initialisation", "initialisation", "Keep the layers' default initialisation (or a random one): "
                 "constant weights never break symmetry.", _initialisation),
    Intervention("output activation", "activation", "Remove the activation on the output: the loss expects "
                 "unbounded values.", _output_activation),
    Intervention("weight decay", "regularisation", "Lower the weight decay.", _weight_decay),
    Intervention("dropout", "regularisation", "Lower the dropout rate.", _dropout),
    Intervention("width", "architecture", "Widen the bottleneck layer.", _width),
]


def diagnose(exp: Experiment, skip: tuple[str, ...] = ()) -> Diagnosis:
    """Run the mechanical fixes of earlier findings, then the applicable interventions, until one
    removes the symptom of the baseline run; ``skip``: causes already ruled out by the caller."""
    d = Diagnosis()
    base = exp.baseline
    partial = None  # the first change that removes most of the error without reaching the goal
    # a share of the final error means something only where the baseline's error settled (not oscillating)
    settled = curve.describe(base.measure[:exp.baseline_steps]).kind not in UNSTABLE
    for cause, advice, change, variant in _candidates(exp, skip):
        if exp.time_left() <= 0:
            break
        try:
            run = variant if isinstance(variant, OneBatch) else exp.run(variant)
        except Exception:  # noqa: BLE001 - the change does not apply to this model
            continue
        result = {**before_after(base, run, change), "cause": cause}
        d.tried.append(result)
        if run.converged and run.status != "crashed":
            _confirm(d, cause, change, advice, run, result)
            return d  # the first (most likely) change that reaches the goal needs nothing else
        if partial is None and settled and result["verified"] and _remaining(base, run) <= REMOVES:
            # it removes the symptom unless a later change reaches the goal: a rate 10x higher shrinks the
            # error of targets at 3000 +- 30 under SGD, but only standardising them (and retuning) gets there
            partial = (cause, change, advice, run, result)
        d.ruled_out.append(f"{change} ({outcome_words(run)})")
        if result["verified"]:
            d.helped.append(change)
    if partial is not None:
        d.ruled_out = [r for r in d.ruled_out if not r.startswith(partial[1] + " (")]
        d.helped = [h for h in d.helped if h != partial[1]]
        _confirm(d, *partial)
    return d


def _confirm(d: Diagnosis, cause: str, change: str, advice: str, run: OneBatch, result: dict[str, Any]) -> None:
    d.cause, d.change, d.advice, d.run = cause, change, advice, run
    d.verified_fix = {**result, "summary": f"{change}: {_summary(result, run)}"}


def _remaining(before: OneBatch, after: OneBatch) -> float:
    """The share of the baseline's final error (or loss) that the change leaves."""
    b, a = before.error or before.measure, after.error or after.measure
    if not a or not b or not b[-1] > 0 or after.finished:
        return 1.0
    return a[-1] / b[-1]


def _candidates(exp: Experiment, skip: tuple[str, ...]) -> Iterator[tuple[str, str, str, Any]]:
    # a bug an earlier check found, whose fix is mechanical, is likelier than any guess below: a softmax
    # before cross-entropy (LOS001) also trains with a 10x rate, but removing it is the fix
    for finding in list(exp.ctx.findings):
        trial = fix_trial(exp.ctx, finding)
        cause = FIX_CAUSES.get(finding.code)
        if trial is None or trial.before is not None or cause is None or cause in skip:
            continue  # no mechanical fix, or one verify_fixes judges on its own
        yield cause, f"Fix {finding.code} at {finding.location}.", f"{trial.description} ({finding.code})", trial.after
    for intervention in INTERVENTIONS:
        if intervention.cause in skip:
            continue
        try:
            trials = list(intervention.trials(exp))
        except Exception:  # noqa: BLE001 - the model does not have the form this intervention needs
            continue
        for change, variant in trials:
            yield intervention.cause, intervention.advice, change, variant


def _summary(result: dict[str, Any], after: OneBatch) -> str:
    b, a = result["before"], result["after"]
    what = "error" if "error" in b and "error" in a else "loss"
    reached = f"goal reached in {after.converged_at} steps, " if after.converged else ""
    return (f"{what} on one batch {b[what]['end']} after {b['steps']} steps -> {reached}{a[what]['end']} after "
            f"{a['steps']} steps")
