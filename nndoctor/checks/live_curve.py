"""Reading a live training curve (minibatch losses of a real run): smoothed, robust to ordinary
minibatch noise and learning-rate schedules. Judges what the live curve and loss-sign watchers
(``probes/watchers/curve.py``, ``loss_sign.py``) measured; the single-batch experiment has its own,
stricter reader.

Windows of medians, not single steps, carry every verdict, and each verdict needs the run to have
never improved, so a noisy but learning run stays silent.
"""
from __future__ import annotations

import math
import statistics
from typing import Any

from nndoctor.findings import Finding

MIN_STEPS = 30


def downsample(values: list[float], points: int = 200) -> list[float]:
    if len(values) <= points:
        return list(values)
    stride = len(values) / points
    return [values[int(i * stride)] for i in range(points)]


def _window_medians(values: list[float], width: int) -> list[float]:
    return [statistics.median(values[i:i + width]) for i in range(0, len(values) - width + 1, width)]


def judge(losses: list[float], grad_norms: list[float], *, trend: bool = True) -> list[Finding]:
    """Findings on the curve. ``trend=False`` for losses that need not fall (several optimizers, each with
    its own objective: a GAN's or an actor-critic's game): only non-finite losses and gradients are judged,
    as for a loss that takes negative values."""
    findings: list[Finding] = []
    bad = next((i for i, v in enumerate(losses) if not math.isfinite(v)), None)
    if bad is not None:
        findings.append(Finding("OFB002", f"The loss became non-finite ({losses[bad]}) at step {bad + 1} after "
                                f"starting at {losses[0]:.4g}: numerics, or a learning rate far too high.",
                                location="loss curve", evidence={"step": bad + 1, "curve": downsample(losses[:bad + 1])},
                                suggestions=["Lower the learning rate 10x; see the NUM findings for where it began."]))
        return findings
    findings += _gradient_growth(grad_norms)
    n = len(losses)
    # A loss that goes negative is not an error measure (a policy-gradient surrogate, a log-likelihood):
    # whether it rises or stalls says nothing by itself.
    if n < MIN_STEPS or not trend or min(losses) < 0:
        return findings
    width = max(5, n // 10)
    medians = _window_medians(losses, width)
    first, last, best = medians[0], medians[-1], min(medians)
    scale = max(abs(first), 1e-8)
    start = losses[0]  # the untrained loss: an explosion in the first steps hides in the first window
    # improved means clearly below both the first window and the untrained loss (a spike inflates the former)
    never_improved = best >= min(first, start) - 0.03 * scale
    evidence = {"steps": n, "first": first, "last": last, "best": best, "curve": downsample(losses)}
    if last > start + 10 * max(abs(start), 1e-8) and best > start:
        findings.append(Finding("OFB002", f"The loss explodes: from {start:.4g} at the first step to a median of "
                                f"{last:.4g} over the last {width} of {n} steps.", location="loss curve",
                                evidence={**evidence, "start": start},
                                suggestions=["Lower the learning rate 10-100x, or add gradient clipping."]))
    elif _wrecked_by_early_explosion(losses, width):
        peak = max(range(n), key=losses.__getitem__)
        findings.append(Finding("OFB002", f"The loss exploded early, from {start:.4g} at the first step to "
                                f"{losses[peak]:.4g} at step {peak + 1}, and afterwards never got clearly below its "
                                f"untrained value (best median {best:.4g} over {width} steps): the blow-up wrecked "
                                "the weights.", location="loss curve",
                                evidence={**evidence, "start": start, "peak": losses[peak], "peak_step": peak + 1},
                                suggestions=["Lower the learning rate 10x (or add warm-up and gradient clipping)."]))
    elif last > first + 0.3 * scale and never_improved and _rising(medians):
        findings.append(Finding("OFB001", f"The loss goes up steadily, from {first:.4g} to {last:.4g} over {n} "
                                "steps, and never improves: a flipped sign (gradient ascent, maximize=True, a "
                                "negated update) or a learning rate far too high.", location="loss curve",
                                evidence=evidence, suggestions=["Check the sign of the loss and of manual updates."]))
    elif never_improved and n >= 2 * MIN_STEPS:
        half = losses[n // 2:]
        spread = (sorted(half)[int(0.9 * len(half))] - sorted(half)[int(0.1 * len(half))]) / scale
        if spread > 1.0:
            findings.append(Finding("OFB003", f"The loss oscillates (the middle 80% of the last {len(half)} losses "
                                    f"spans {spread:.1f}x its level) and never improves on {first:.4g}.",
                                    location="loss curve", evidence={**evidence, "spread": spread},
                                    suggestions=["Lower the learning rate; check that labels match their inputs."]))
        else:
            spike = max(losses[: max(2, n // 5)])
            if spike > 2 * start > 0:  # stalled after a spike: the step was too large, not too small
                cause, fix = (f" after an early spike to {spike:.4g} (from {start:.4g}): a learning rate too high "
                              "can kill ReLU units or saturate others, after which nothing learns",
                              "Lower the learning rate 10x (or add warm-up); then check the loss and data pipeline.")
            else:
                cause, fix = "", ("Raise the learning rate, lower regularisation, and check the loss and data "
                                  "pipeline (nndoctor check runs those checks).")
            findings.append(Finding("OFB004", f"The loss plateaus: after {n} steps its best window median "
                                    f"{best:.4g} is no better than the first {first:.4g}{cause}.",
                                    location="loss curve", evidence={**evidence, "early_spike": spike},
                                    suggestions=[fix]))
    return findings


def _wrecked_by_early_explosion(losses: list[float], width: int) -> bool:
    """A transient explosion (over 10x the untrained loss in the first fifth of the run) after which the
    loss never gets clearly (20%) below the untrained value: training never recovered from it."""
    start = losses[0]
    if start <= 0:
        return False
    early = losses[: max(2, len(losses) // 5)]
    peak = max(range(len(early)), key=early.__getitem__)
    after = losses[peak + 1:]
    if early[peak] < 10 * start or len(after) < 2 * width:
        return False
    return min(_window_medians(after, width)) > 0.8 * start


def _rising(medians: list[float]) -> bool:
    ups = sum(b > a for a, b in zip(medians, medians[1:]))
    return ups >= 0.7 * (len(medians) - 1)


def _gradient_growth(norms: list[float]) -> list[Finding]:
    finite = [v for v in norms if math.isfinite(v)]
    if len(finite) < 10:
        return []
    early = statistics.median(finite[:5])
    peak = max(finite[5:])
    if early > 0 and peak > 1e3 * early and peak > 1e2:
        step = norms.index(peak) + 1
        return [Finding("GRD003", f"The gradient norm grew from {early:.3g} (first steps) to {peak:.3g} at step "
                        f"{step}: exploding gradients.", location="gradients",
                        evidence={"early_norm": early, "peak_norm": peak, "step": step, "grad_norms": downsample(norms)},
                        suggestions=["Clip gradients (torch.nn.utils.clip_grad_norm_), lower the learning rate, "
                                     "or add normalisation layers."])]
    return []


def judge_curve(watcher: Any) -> list[Finding]:
    """The curve watcher's losses and gradient norms. Several optimizers each stepping on a loss of its own
    play a game (GAN, actor-critic): no trend is judged then."""
    run = watcher.run
    return judge(run.losses, run.grad_norms, trend=len(run.loss_owners) <= 1)


def judge_loss_sign(watcher: Any) -> list[Finding]:
    """OFB001 when most steps minimised minus a non-negative loss, confirmed by that loss (the negated
    values the curve recorded) rising over the run; a double flip (maximize=True) does not rise."""
    run = watcher.run
    if not watcher.negated_steps or watcher.negated_steps < 0.5 * run.steps or len(run.losses) < 10:
        return []
    if len(run.loss_owners) > 1:  # a game (a GAN's generator may maximise its critic's loss on purpose)
        return []
    errors = [-v for v in run.losses if math.isfinite(v)]
    width = max(3, len(errors) // 10)
    first, last = statistics.median(errors[:width]), statistics.median(errors[-width:])
    if not last > first + 0.05 * max(abs(first), 1e-8):
        return []
    name = watcher.negated_name
    return [Finding(
        "OFB001", f"{watcher.negated_steps} of {run.steps} optimizer steps minimised minus {name} "
        f"(the scalar passed to backward() negates it): the error itself rose from {first:.4g} to {last:.4g} (medians "
        f"of the first and last {width} steps), so training climbs the loss.", location=watcher.site or "loss",
        evidence={"negated_loss": name, "negated_steps": watcher.negated_steps, "steps": run.steps,
                  "error_first": first, "error_last": last},
        suggestions=[f"Minimise the loss itself: remove the minus sign in front of {name}."])]
