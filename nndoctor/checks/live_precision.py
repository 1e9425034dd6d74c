"""Live runs: mixed precision (``probes/watchers/amp.py``) - a loss computed in float16/bfloat16 (NUM006) and a
GradScaler that skipped most steps (NUM007)."""
from __future__ import annotations

from typing import Any

from nndoctor.findings import Finding

CAUSE = "numerics"
_MIN_SKIPPED = 5  # a GradScaler's first few steps are skipped by design while its scale finds its level


def judge(watcher: Any) -> list[Finding]:
    return [*_low_loss(watcher), *_skipped(watcher)]


def _low_loss(w: Any) -> list[Finding]:
    if w.low_losses < 2:
        return []
    site = w.low_site or "loss"
    if w.low_non_finite:
        harm = (f"it overflowed to Inf/NaN in {w.low_non_finite} of {w.low_losses} backward calls"
                + (" (float16 holds at most 65504)" if w.low_dtype == "float16" else ""))
    else:
        eps = 2 ** -10 if w.low_dtype == "float16" else 2 ** -7
        harm = (f"it holds about 3 significant digits (a last loss of {w.low_last:.4g} is known to "
                f"±{abs(w.low_last) * eps:.2g}); no overflow measured")
    return [Finding(
        "NUM006", f"The loss passed to backward() (at {site}) was {w.low_dtype} in {w.low_losses} calls: the "
        f"loss's reduction ran in low precision; {harm}.", location=site,
        severity=None if w.low_non_finite else "info",
        evidence={"dtype": w.low_dtype, "low_precision_losses": w.low_losses, "non_finite": w.low_non_finite,
                  "backward_at": site, "cause": CAUSE},
        suggestions=["Compute the loss in float32: loss_fn(logits.float(), y), or compute it outside autocast "
                     "(cross_entropy and mse_loss under autocast already run in float32)."])]


def _skipped(w: Any) -> list[Finding]:
    # A healthy scaler skips a run of steps at the start while its scale halves to the level the gradients fit
    # (about 15 from 65536 when they are large). A collapse is most steps skipped after it had found a level,
    # or a scale halved below 1: then the gradients overflow float16 even unscaled.
    later, later_skipped = w.scaler_steps - w.leading_skipped, w.skipped - w.leading_skipped
    collapsed = (later_skipped >= _MIN_SKIPPED and 2 * later_skipped >= later) or w.last_scale < 1
    if w.skipped < _MIN_SKIPPED or 2 * w.skipped < w.scaler_steps or not collapsed:
        return []
    site = w.scaler_site or "GradScaler"
    where, evidence = "", {}
    if w.births:  # a replay of the last forward under its autocast made NaN/Inf: that op is the cause
        b = w.births[0]
        site = b.site.location("model")
        where = f" The forward replayed under the same autocast first made NaN/Inf at `{b.op}` in {b.site.describe()}."
        evidence = {"op": b.op, "inputs": b.inputs}
    return [Finding(
        "NUM007", f"The GradScaler skipped {w.skipped} of {w.scaler_steps} optimizer steps "
        f"({w.skipped / w.scaler_steps:.0%}) because the gradients held Inf/NaN; its scale went from "
        f"{w.first_scale:g} to {w.last_scale:g}. Those steps changed nothing.{where}", location=site,
        evidence={"skipped_steps": w.skipped, "scaler_steps": w.scaler_steps, "first_scale": w.first_scale,
                  "last_scale": w.last_scale, "scaler_step_at": w.scaler_site, "cause": CAUSE, **evidence},
        suggestions=["Find what overflows in float16 (a loss or a sum computed in low precision, exp of large "
                     "values, NaN in the data): compute it in float32, or train in bfloat16."])]
