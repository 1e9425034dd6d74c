"""Judging learning-rate schedules from what the LR watcher (``probes/watchers/lr_schedule.py``) measured:
OFB005 when a scheduler stepped every batch drove the LR to ~0 early and the loss stopped improving when
it did (the harm, measured against the rate of improvement just before); OFB006 (info) when a scheduler
stepped before its optimizer's first step."""
from __future__ import annotations

import statistics
from typing import Any

from nndoctor.catalogue import Severity
from nndoctor.checks.live_curve import MIN_STEPS, downsample
from nndoctor.findings import Finding

COLLAPSED = 1e-2  # LR below this fraction of its peak: collapsed
STRONG = 1e-3  # ... below this, with the loss stalled: an error


def collapse(lrs: list[float]) -> tuple[int, float] | None:
    """(step index where the LR fell below 1/100 of its peak and stayed there, peak), or None."""
    if not lrs:
        return None
    peak_at = max(range(len(lrs)), key=lrs.__getitem__)
    peak = lrs[peak_at]
    if peak <= 0:
        return None
    c = next((i for i in range(peak_at, len(lrs)) if lrs[i] < COLLAPSED * peak), None)
    if c is None or max(lrs[c:]) >= COLLAPSED * peak:
        return None
    return c, peak


def stall(losses: list[float], c: int) -> dict[str, float | None] | None:
    """The loss stopped improving at step ``c``: over the steps after it, it gained less than a tenth of its
    rate just before (or, collapsed before anything was learned, never 10% below its start). None if it kept
    improving (or had already converged: no rate before to lose)."""
    post = losses[c:]
    if len(post) < 20:
        return None
    scale = max(abs(losses[0]), 1e-8)
    w = max(3, len(post) // 5)
    post_gain = statistics.median(post[:w]) - statistics.median(post[-w:])
    post_rate = post_gain / max(1, len(post) - w)
    pre = losses[:c]
    wp = max(2, len(pre) // 3)
    pre_rate = (statistics.median(pre[-2 * wp:-wp]) - statistics.median(pre[-wp:])) / wp if len(pre) >= 6 else 0.0
    if pre_rate * wp >= 0.01 * scale:  # it was learning when the LR collapsed
        if post_rate >= 0.1 * pre_rate:
            return None
    else:  # nothing learned before the collapse (or already converged): stalled only if it never learned
        pre_rate = None  # no rate before to compare with
        if statistics.median(post[-w:]) < 0.9 * losses[0]:  # collapsed at once, yet it learned
            return None
    return {"loss_at_collapse": statistics.median(post[:w]), "loss_last": statistics.median(post[-w:]),
            "rate_before": pre_rate, "rate_after": post_rate}


def judge(watcher: Any) -> list[Finding]:
    findings: list[Finding] = []
    run = watcher.run
    lrs = watcher.curve()
    for s in watcher.schedules:
        if s.early_site:
            findings.append(Finding(
                "OFB006", f"{s.kind} (built at {s.site}) stepped at {s.early_site} before its optimizer's first "
                "step: the schedule's first learning rate was skipped.", location=s.early_site,
                evidence={"cause": "lr-schedule", "scheduler": s.kind, "scheduler_site": s.site},
                suggestions=["Call scheduler.step() after optimizer.step()."]))
    s = watcher.schedule_of()
    n = min(len(lrs), len(run.losses))
    if s is None or s.plateau or n < MIN_STEPS or len(run.loss_owners) > 1:
        return findings
    stepped = watcher.run.steps_of.get(s.optimizer_id, 0) - max(s.created_at, 0)
    if s.steps < 0.5 * max(stepped, 1):  # stepped per epoch (or rarer): what a decaying schedule is written for
        return findings
    found = collapse(lrs[:n])
    if found is None:
        return findings
    c, peak = found
    if c > 0.6 * n:  # decays at the end of the run (cosine, linear to 0, OneCycle): as designed
        return findings
    harm = stall(run.losses[:n], c)
    if harm is None:
        return findings
    last = lrs[n - 1]
    strong = last < STRONG * peak
    per = s.steps / max(stepped, 1)
    shape = (f" (step_size={s.step_size})" if s.step_size else f" (milestones={s.milestones})" if s.milestones else "")
    findings.append(Finding(
        "OFB005", f"{s.kind}{shape}, built at {s.site}, stepped {per:.2g}x per optimizer step (at "
        f"{s.step_site}): the learning rate fell from {peak:.3g} to {lrs[c]:.3g} by step {c + 1} of {n} and "
        f"ended at {last:.3g}; the loss stopped improving then ({harm['loss_at_collapse']:.4g} -> "
        f"{harm['loss_last']:.4g} over the remaining {n - c} steps).", location=s.site,
        severity=Severity.ERROR if strong else Severity.WARNING,
        evidence={"cause": "lr-schedule", "scheduler": s.kind, "scheduler_site": s.site, "step_site": s.step_site,
                  "scheduler_steps": s.steps, "optimizer_steps": stepped, "peak_lr": peak, "lr_at_collapse": lrs[c],
                  "collapse_step": c + 1, "final_lr": last, **harm, "lr_curve": downsample(lrs[:n])},
        suggestions=[f"Call scheduler.step() once per epoch (after the batch loop), or give {s.kind} its "
                     "step_size/milestones in batches."]))
    return findings
