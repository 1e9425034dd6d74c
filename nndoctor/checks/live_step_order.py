"""Live runs: the order of a step's gradient events (``probes/watchers/step_order.py``) - zero_grad between
backward and step (GRD006), zero_grad inside the micro-batch loop (GRD007), micro-batch losses summed and not
averaged (GRD008), clipping before backward or of still-scaled gradients (GRD009). A pattern counts when it
holds in at least half of an optimizer's steps, and at least twice (a one-off warm-up call is not a loop)."""
from __future__ import annotations

from typing import Any

from nndoctor.findings import Finding

CAUSE = "gradient-handling"
_PLAIN_STEP = {"SGD", "ASGD"}  # the update is proportional to the gradient (Adam-like ones divide its scale out)


def _most(count: int, steps: int) -> bool:
    return count >= 2 and 2 * count >= steps


def judge(watcher: Any) -> list[Finding]:
    found: list[Finding] = []
    for o in watcher.orders.values():
        found += _zeroed(o) + _reset(o) + _summed(o) + _late_clips(o) + _scaled_clips(o)
    return found


def _zeroed(o: Any) -> list[Finding]:
    n = o.zeroed_steps.n
    if not _most(n, o.steps):
        return []
    site = o.zeroed_steps.kept[0]
    return [Finding(
        "GRD006", f"In {n} of {o.steps} steps of the {o.optimizer_type}, zero_grad() ran after backward() and "
        f"before step() (at {site}): every step found its gradients erased and applied none of them.",
        location=site, evidence={"steps": o.steps, "steps_without_gradients": n, "zero_grad_at": site,
                                 "cause": CAUSE},
        suggestions=["Call optimizer.zero_grad() before loss.backward() (or after optimizer.step()), "
                     "never between backward() and step()."])]


def _reset(o: Any) -> list[Finding]:
    n = o.reset_steps.n
    if not _most(n, o.steps):
        return []
    k = max(c for c, _ in o.reset_steps.kept)
    site = next((s for _, s in o.reset_steps.kept if s), "optimizer")
    return [Finding(
        "GRD007", f"In {n} of {o.steps} steps of the {o.optimizer_type}, up to {k} micro-batches ran backward() "
        f"but zero_grad() (at {site}) erased each one's gradients before the step used them: only the last "
        f"micro-batch counts ({k - 1} of {k} discarded).", location=site,
        evidence={"steps": o.steps, "reset_steps": n, "micro_batches": k, "zero_grad_at": site, "cause": CAUSE},
        suggestions=["Call optimizer.zero_grad() once per optimizer step, after step(), not inside the "
                     "micro-batch loop."])]


def _summed(o: Any) -> list[Finding]:
    n = o.summed_steps.n
    if not _most(n, o.steps):
        return []
    k = max(c for c, _ in o.summed_steps.kept)
    site = next((s for _, s in o.summed_steps.kept if s), "loss")
    plain = o.optimizer_type in _PLAIN_STEP
    harm = (f"with {o.optimizer_type} the update is {k}x that of the mean gradient: an effective learning rate "
            f"of {k * o.lr:.3g} instead of {o.lr:.3g}") if plain else \
        (f"{o.optimizer_type} normalises the gradient's scale, so the update barely changes "
         "(only eps and weight decay weigh differently)")
    return [Finding(
        "GRD008", f"In {n} of {o.steps} steps of the {o.optimizer_type}, {k} micro-batches' gradients were "
        f"summed: their losses were not divided by the number of micro-batches (backward at {site}); {harm}.",
        location=site, severity=None if plain else "info",
        evidence={"steps": o.steps, "summed_steps": n, "micro_batches": k, "lr": o.lr, "optimizer": o.optimizer_type,
                  "effective_lr": k * o.lr if plain else None, "backward_at": site, "cause": CAUSE},
        suggestions=[f"Divide each micro-batch's loss by the number of micro-batches (loss = loss / {k}) "
                     "before backward()."])]


def _late_clips(o: Any) -> list[Finding]:
    n = o.late_clips.n
    if not _most(n, o.steps):
        return []
    first = o.late_clips.kept[0]
    kind, threshold, site = first["kind"], first["threshold"], first["site"] or "optimizer"
    over, largest = o.late_over
    name = "clip_grad_norm_" if kind == "norm" else "clip_grad_value_"
    if over:
        harm = (f"in {over} of these steps the gradient norm was above {threshold:g} (up to {largest:.3g}) "
                "and went unclipped")
    else:
        harm = f"the gradient norm stayed at most {threshold:g} in these steps, so no harm was measured yet"
    return [Finding(
        "GRD009", f"In {n} of {o.steps} steps of the {o.optimizer_type}, {name} (at {site}) ran before the "
        f"step's backward(): it clipped nothing of the gradients the step applied; {harm}.",
        location=site, severity=None if over else "info",
        evidence={"steps": o.steps, "clipped_before_backward": n, "threshold": threshold, "unclipped_steps": over,
                  "max_norm_seen": largest if over else None, "clip_at": site, "cause": CAUSE},
        suggestions=[f"Call {name} after loss.backward() and before optimizer.step()."])]


def _scaled_clips(o: Any) -> list[Finding]:
    clips = [c for c in o.scaled_clips.kept if isinstance(c.get("norm"), float) and c["scale"] > 1]
    if not clips or not _most(o.scaled_clips.n, o.steps):
        return []
    first = clips[0]
    threshold, site = first["threshold"], first["site"] or "optimizer"
    # the factor the clip applied (to the scaled norm) against the one the true norm called for
    shrunk = [min(1.0, threshold / (c["norm"] / c["scale"])) / min(1.0, threshold / c["norm"])
              for c in clips if c["norm"] > 0]
    worst = max(shrunk, default=1.0)
    harmed = sum(s > 1.01 for s in shrunk)
    harm = (f"in {harmed} of the {len(clips)} clips measured the scaled norm (e.g. {first['norm']:.3g} at scale {first['scale']:g}) "
            f"was compared with {threshold:g}: gradients shrunk up to {worst:.3g}x more than clipping the true "
            "norm would") if harmed else "the clip left the gradients unchanged so far"
    return [Finding(
        "GRD009", f"clip_grad_norm_ (at {site}) ran on gradients a GradScaler had scaled and not unscaled: {harm}.",
        location=site, severity=None if harmed else "info",
        evidence={"scaled_clips": o.scaled_clips.n, "measured_clips": len(clips), "harmed_clips": harmed, "threshold": threshold,
                  "max_extra_shrink": worst, "scale": first["scale"], "clip_at": site, "cause": CAUSE},
        suggestions=["Call scaler.unscale_(optimizer) before clipping, then scaler.step(optimizer)."])]
