"""Naming the cause of a live curve finding from the learning rate the LR watcher recorded
(``probes/watchers/lr_schedule.py``): a divergence right after the LR rose (warm-up, OneCycle, a growing
schedule) is the schedule's, at its creation line; one at a constant LR is the learning rate's; a plateau
with the LR collapsed by a scheduler is the schedule's; a plateau at a constant LR whose steps barely move
the weights (measured update/weight ratio) says to raise the learning rate first."""
from __future__ import annotations

import math
import statistics
from typing import Any

from nndoctor.catalogue import Severity
from nndoctor.checks.live_curve import downsample
from nndoctor.checks.live_curve import judge_curve as curve_findings
from nndoctor.checks.live_schedule import STRONG, collapse
from nndoctor.findings import Finding

SMALL_UPDATE = 1e-4  # |update| / |weights| per step; healthy training is around 1e-3


def judge_curve(watcher: Any) -> list[Finding]:
    """The curve's findings (``live_curve.judge_curve``), each with its cause named from the learning-rate
    schedule where the LR watcher saw one (a single loss: no game)."""
    run = watcher.run
    findings = curve_findings(watcher)
    schedule = getattr(run, "lr_schedule", None)  # the LR watcher's (probes/watchers/lr_schedule.py)
    if schedule is not None and len(run.loss_owners) <= 1:
        findings = [name_cause(f, run, schedule) for f in findings]
    return findings


def name_cause(f: Finding, run: Any, schedule: Any) -> Finding:
    try:
        lrs = schedule.curve()
        if not lrs or "cause" in f.evidence:
            return f
        if f.code == "OFB002":
            return _diverged(f, run, schedule, lrs)
        if f.code == "OFB004":
            return _plateau(f, run, schedule, lrs)
    except Exception:  # a cause is a bonus: never lose the finding over it
        return f
    return f


def _failing_step(f: Finding, losses: list[float]) -> int:
    """0-based index of the step where the loss failed: non-finite, or first over 10x its start."""
    ev = f.evidence
    if "peak_step" in ev:
        return int(ev["peak_step"]) - 1
    if "step" in ev:
        return int(ev["step"]) - 1
    start = abs(losses[0]) if losses else 0.0
    return next((i for i, v in enumerate(losses) if not math.isfinite(v) or abs(v) > 10 * max(start, 1e-8)),
                len(losses) - 1)


def _diverged(f: Finding, run: Any, schedule: Any, lrs: list[float]) -> Finding:
    i = min(_failing_step(f, run.losses), len(lrs) - 1)
    before = lrs[: i + 1]
    lr, low, peak = lrs[i], min(before), max(before)
    history = run.grad_norms[: i + 1]
    ev = {**f.evidence, "lr_at_failure": lr, "peak_lr": peak, "grad_norm_history": downsample(history),
          "lr_curve": downsample(before)}
    if peak <= 1.01 * low:  # a constant rate
        if not _steps_grew(history):
            # the loss failed with no step behind it, or with gradients as small as at the start: the values
            # overflow in the computation itself (a low-precision loss, a log of 0), which a lower rate would not fix
            f.evidence = ev
            f.message += (f" The learning rate was constant at {lr:.3g} and the gradient norm stayed "
                          f"{_fmt_norms(history)}: the step size did not drive it; look at where the values "
                          "overflow (the NUM findings).")
            return f
        f.evidence = {**ev, "cause": "learning-rate"}
        f.message += f" The learning rate was constant at {lr:.3g} throughout: it is too high for this model."
        f.suggestions = [f"Lower the learning rate 10x (to {lr / 10:.3g}), or add gradient clipping."]
        return f
    if lr < 1.5 * low or lr < 0.5 * peak:  # the LR had not risen (or had already come down): no cause named
        f.evidence = ev
        return f
    s = schedule.schedule_of()
    rose_from = next((j for j in range(i, -1, -1) if lrs[j] <= 1.01 * low), 0)
    if s is not None and not s.plateau:
        who = f"{s.kind} (built at {s.site})"
        f.location = s.site
        ev.update({"scheduler": s.kind, "scheduler_site": s.site})
    else:
        who = "the training script (the param groups' lr was changed without a scheduler)"
    f.evidence = {**ev, "cause": "lr-schedule", "lr_rose_from": low, "lr_rose_at_step": rose_from + 1}
    f.message += (f" At step {i + 1} the learning rate was {lr:.3g}, raised from {low:.3g} at step {rose_from + 1} "
                  f"by {who}; gradient norm {_fmt_norms(history)}.")
    f.suggestions = [f"Lower the schedule's peak learning rate (it failed at {lr:.3g}; try {lr / 10:.3g}), "
                     "lengthen the warm-up, or add gradient clipping."]
    return f


def _steps_grew(norms: list[float]) -> bool:
    """Did the gradient norm grow (10x over its first steps, or to Inf/NaN) before the loss failed? A rate too
    high makes each step larger than the last; a loss that fails at the first step had no step behind it."""
    if len(norms) < 2:
        return False
    if any(not math.isfinite(v) for v in norms[1:]):
        return True
    return max(norms[1:]) > 10 * min(norms[:3])


def _fmt_norms(norms: list[float]) -> str:
    finite = [v for v in norms if math.isfinite(v)]
    if not finite:
        return "non-finite"
    early = statistics.median(finite[: min(5, len(finite))])
    return f"{early:.3g} in the first steps, {finite[-1]:.3g} at the last finite step"


def _plateau(f: Finding, run: Any, schedule: Any, lrs: list[float]) -> Finding:
    n = min(len(lrs), len(run.losses))
    if run.losses and f.evidence.get("early_spike", 0) > 2 * run.losses[0] > 0:  # too large a step, already said
        return f
    s = schedule.schedule_of()
    found = collapse(lrs[:n])
    if found is not None and s is not None and not s.plateau:
        c, peak = found
        f.location = s.site
        f.evidence = {**f.evidence, "cause": "lr-schedule", "scheduler": s.kind, "scheduler_site": s.site,
                      "peak_lr": peak, "final_lr": lrs[n - 1], "collapse_step": c + 1,
                      "lr_curve": downsample(lrs[:n])}
        f.message += (f" {s.kind} (built at {s.site}) drove the learning rate from {peak:.3g} to {lrs[n - 1]:.3g} "
                      f"(below 1/100 of its peak from step {c + 1}).")
        f.suggestions = ["Fix the schedule first: step the scheduler once per epoch, or decay it more slowly."]
        if lrs[n - 1] < STRONG * peak:
            f.severity = Severity.ERROR
        return f
    if max(lrs[:n]) > 1.01 * min(lrs[:n]):
        return f
    ratios = [r for _, r in getattr(schedule, "update_ratios", [])]
    if not ratios:
        return f
    ratio = statistics.median(ratios)
    f.evidence = {**f.evidence, "lr": lrs[0], "update_ratio": ratio}
    if ratio < SMALL_UPDATE:
        f.evidence["cause"] = "learning-rate"
        f.message += (f" The learning rate stayed at {lrs[0]:.3g} and each step moved the weights by {ratio:.1e} of "
                      f"their norm (healthy training is near 1e-3): the steps are too small.")
        f.suggestions = [f"Raise the learning rate first (try {lrs[0] * 10:.3g} to {lrs[0] * 100:.3g}); then check "
                         "regularisation and the loss and data pipeline."]
    else:
        f.message += (f" Each step moved the weights by {ratio:.1e} of their norm at a constant learning rate of "
                      f"{lrs[0]:.3g}: the steps are not too small, so look at the loss, labels and data first.")
    return f
