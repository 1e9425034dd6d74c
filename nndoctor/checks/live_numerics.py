"""Live runs: where the first NaN/Inf was made (NUM001 forward, NUM002 backward), from the non-finite
watcher's replay of the failing step (``probes/watchers/non_finite.py``)."""
from __future__ import annotations

import math
from typing import Any

from nndoctor.findings import Finding


def judge(watcher: Any) -> list[Finding]:
    trip = watcher.trip
    if trip is None:
        return []
    step, loss, births, bad = trip["step"], trip["loss"], trip["births"], trip["bad_grads"]
    if births:
        b = births[0]
        return [Finding(
            "NUM001", f"At step {step} the first NaN/Inf was made in the forward pass by `{b.op}` in "
            f"{b.site.describe()} (inputs {b.inputs[:2]}); replayed on a copy of the model.",
            location=b.site.location("model"), evidence={"step": step, "op": b.op, "inputs": b.inputs,
                                                         "produced": b.produced},
            suggestions=["Guard the op (clamp, an epsilon, a stable fused function such as log_softmax)."])]
    if math.isfinite(loss) and bad:
        where = "model." + bad[-1].rsplit(".", 1)[0] if "." in bad[-1] else "model"
        return [Finding(
            "NUM002", f"At step {step} the loss was finite ({loss:.4g}) but the gradients of "
            f"{len(bad)} parameters were NaN/Inf, first (nearest the loss) {bad[-1]}.",
            location=where, evidence={"step": step, "loss": loss, "non_finite_grads": bad[:20]},
            suggestions=["Look for sqrt/log/division at 0 in that module's forward; add an epsilon."])]
    if not math.isfinite(loss):
        return [Finding(
            "NUM001", f"At step {step} the loss was {loss}; the model's forward replays finite, so the "
            "NaN/Inf is made in the loss computation.", location="loss",
            evidence={"step": step, "loss": str(loss)},
            suggestions=["Use a fused loss (cross_entropy, BCEWithLogitsLoss) or add an epsilon to logs."])]
    return []
