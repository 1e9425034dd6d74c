"""Reports built by hand for the report tests: every step, every plot's data, and a hostile one."""
from __future__ import annotations

import math
from functools import lru_cache

from helpers import run_checked

from nndoctor.findings import CheckRecord, Finding
from nndoctor.report import Report

XSS = "<script>alert(1)</script>"
LONG_PATH = "model." + ".".join(f"encoder_block_{i}" for i in range(12)) + ".attention.out_proj"


def curve(n: int = 60, rate: float = 30.0, floor: float = 0.3) -> list[float]:
    return [2.3 * math.exp(-i / rate) + floor for i in range(n)]


def synthetic_report(**meta) -> Report:
    """A report with a finding of every step, every plot's data, and one of each check status."""
    findings = [
        Finding("LOS001", "The model ends in model.3 (Softmax) and CrossEntropyLoss applies log-softmax again: "
                          "initial loss 2.302, gradient norm 0.003.", location="model.3", severity="error",
                evidence={"initial_loss": 2.302, "loss": "CrossEntropyLoss"},
                suggestions=["Remove the final `nn.Softmax`: CrossEntropyLoss takes raw logits."]),
        Finding("DAT001", "Inputs have std 101.3, far from 1.", location="train_data", severity="warning",
                evidence={"std": 101.3}, suggestions=["Scale the inputs: `x / 255`."]),
        Finding("NUM004", "80% of the units of model.1 never activate.", location="model.1", severity="warning",
                evidence={"layers": [{"name": "model.1", "dead_fraction": 0.8}]}),
        Finding("OFB004", "Training on one batch plateaus at 0.95 after 60 steps.", location="model", severity="error",
                evidence={"curve": curve(floor=0.95)},
                suggestions=["Raise the learning rate (`lr=1e-2` overfits the batch)."]),
        Finding("GRD004", "Gradients of model.0 are 1e-9.", location="model.0", severity="warning",
                evidence={"layers": [{"name": "model.0", "grad_norm": 1e-9, "update_ratio": 1e-10}]}),
        Finding("OFB000", "A healthy run would overfit one batch.", severity="info"),
        Finding("CMP001", "The model (0.31) is below logistic regression (0.95).", location="model", severity="error",
                evidence={"model": 0.31}, suggestions=["Look for an information bottleneck."]),
    ]
    checks = [
        CheckRecord("one-training-step", "passed", 0.4, "", "run"),
        CheckRecord("memory-fit", "skipped", 0.0, "no memory budget given", "run"),
        CheckRecord("loss-input", "failed", 0.1, "LOS001", "bugs"),
        CheckRecord("data-scale", "failed", 0.1, "DAT001", "bugs"),
        CheckRecord("dead-units", "failed", 0.1, "NUM004", "bugs"),
        CheckRecord("overfit-one-batch", "failed", 2.0, "OFB004", "overfit"),
        CheckRecord("gradient-flow", "crashed", 0.1, "ValueError: boom | gradients.py:3", "overfit"),
        CheckRecord("beats-baselines", "failed", 1.0, "CMP001", "compare"),
        CheckRecord("ddp-replicas", "skipped", 0.0, "not selected", "distributed"),
    ]
    extras = {
        "overfit": {"curves": {"as given": curve(floor=0.95), "confirmation: lr 0.01": curve(floor=0.5),
                               "OFB004 fixed": {"steps": list(range(0, 60, 2)), "loss": curve(30, rate=3, floor=0)}},
                    "ylabel": "loss"},
        "gradients": {"layers": [{"name": f"model.{i}", "grad_norm": 10.0 ** -i, "update_ratio": 10.0 ** (-i - 2)}
                                 for i in (0, 2, 4)] + [{"name": "model.6", "grad_norm": 0.0, "update_ratio": 0.0}]},
        "activations": {"layers": [{"name": "model.1", "dead_fraction": 0.8, "saturated_fraction": 0.0}]},
        "compare": {"metric": "accuracy", "split": "validation data", "rows": [
            {"name": "model", "kind": "model", "value": 0.31},
            {"name": "majority class", "kind": "baseline", "value": 0.1},
            {"name": "logistic regression", "kind": "baseline", "value": 0.95},
            {"name": "chance (uniform guessing)", "kind": "chance", "value": 0.1},
            {"name": "known result (paper)", "kind": "known", "value": 0.98}]},
        "loss_curve": curve(200, rate=80),
    }
    return Report(findings=findings, checks=checks,
                  meta={"seconds": 4.2, "seed": 0, "task": {"kind": "classification", "num_classes": 10},
                        "extras": extras, **meta})


def hostile_report() -> Report:
    """Every user-controlled string is markup that would run if it were not escaped."""
    layer = f"model.{XSS}"
    return Report(
        findings=[Finding("RUN001", f"The forward crashed in {layer} ({XSS}) `{XSS}`", location=layer,
                          evidence={XSS: XSS, "chain": [XSS, {"x": XSS}], "file": f"/home/{XSS}/train.py:3"},
                          suggestions=[f"Rename `{XSS}` to <b>x</b>"]),
                  Finding("OFB004", XSS, location=layer, evidence={"curve": curve()}),
                  Finding("GRD004", XSS, location=layer, severity="warning",
                          evidence={"layers": [{"name": layer, "grad_norm": 1e-9, "update_ratio": 1e-9}]})],
        checks=[CheckRecord(XSS, "crashed", 0.0, XSS, "run")],
        meta={"title": XSS, "task": {"kind": XSS}, "extras": {
            "overfit": {"curves": {XSS: curve(), f"{XSS} fix": curve(rate=3)}, "ylabel": XSS},
            "compare": {"metric": XSS, "split": XSS, "rows": [{"name": XSS, "kind": XSS, "value": 0.5}]},
            "loss_curve": {"steps": [0, 1, 2], "loss": [1.0, 0.5, 0.25]}}},
    )


@lru_cache(maxsize=None)
def demo_report() -> Report:
    """The real report of the demo's buggy setup, computed once per test session (the JSON is validated)."""
    from nndoctor.demo import buggy_setup

    return run_checked(buggy_setup(), budget=30)
