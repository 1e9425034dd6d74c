"""Wasted compute on a real GPU (EFF001, EFF003-EFF005); skipped without CUDA. ``nndoctor run`` on an unmodified
script (``scripts/gpu_efficiency.py``) with the patterns planted, next to its twin with every fix, and a Monitor
loop in float32 next to the same loop under bfloat16 autocast. All info, never a warning."""
from __future__ import annotations

import json
import os

import pytest
import torch
from torch import nn

import nndoctor
from helpers import toy_problem
from test_cli import nndoctor as nndoctor_cli

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
SCRIPT = os.path.join(os.path.dirname(__file__), "scripts", "gpu_efficiency.py")


def _run(tmp_path, *flags: str) -> dict:
    path = tmp_path / "report.json"
    out = nndoctor_cli("run", "--json", str(path), SCRIPT, *flags)
    assert out.returncode == 0 and "done 20 steps" in out.stdout, out.stdout[-2000:] + out.stderr[-2000:]
    findings = json.loads(path.read_text())["findings"]
    assert [f for f in findings if f["severity"] != "info"] == [], findings
    return {f["code"]: f for f in findings if f["code"].startswith("EFF")}


def test_bf16_with_an_odd_classifier_nchw_convs_and_a_slow_dataset(tmp_path):
    found = _run(tmp_path, "--precision", "bf16", "--classes", "1001", "--layout", "nchw", "--data", "slow")
    assert found["EFF003"]["location"] == "model.classifier"
    assert found["EFF003"]["evidence"]["layers"][0]["out"] == 1001
    assert found["EFF004"]["location"] == "model.features.0"
    assert found["EFF004"]["evidence"]["conv_share"] >= 0.5
    assert found["EFF001"]["evidence"]["gpu_idle_share"] > 0.5 and "gpu_efficiency.py:" in found["EFF001"]["location"]
    assert "EFF005" not in found


@pytest.mark.skipif(not torch.cuda.is_available() or not torch.cuda.is_bf16_supported(), reason="needs bf16")
def test_float32_on_a_bf16_gpu_is_eff005(tmp_path):
    found = _run(tmp_path, "--precision", "fp32")
    assert set(found) == {"EFF005"} and "gpu_efficiency.py:" in found["EFF005"]["location"]


def test_the_fixed_twin_is_silent(tmp_path):
    assert _run(tmp_path, "--precision", "bf16", "--classes", "1008", "--layout", "nhwc", "--data", "fast") == {}


def _loop(autocast: bool) -> nndoctor.Report:
    x, y, model, opt = toy_problem(320, device="cuda")
    with nndoctor.Monitor(model, opt) as mon:
        for i in range(6):
            with torch.autocast("cuda", dtype=torch.bfloat16, enabled=autocast):
                loss = nn.functional.cross_entropy(model(x[i * 32:][:32]), y[i * 32:][:32])
            opt.zero_grad()
            loss.backward()
            opt.step()
    return mon.report()


@pytest.mark.skipif(not torch.cuda.is_available() or not torch.cuda.is_bf16_supported(), reason="needs bf16")
def test_monitor_float32_loop_is_eff005_and_its_autocast_twin_is_silent():
    (f,) = _loop(autocast=False).by_code("EFF005")
    assert f.severity.value == "info" and "test_cuda_efficiency.py:" in f.location
    report = _loop(autocast=True)
    assert {g.code for g in report.findings if g.code.startswith("EFF")} == set()  # a toy: its dims cannot matter
