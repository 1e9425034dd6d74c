"""The live optimizer watcher (GRD002): a warm-up from learning rate 0 is not "changed none"; "changed none"
is read from a few numbers per parameter, never from copies; an optimizer that never steps while backward
runs is found at the line that built it. Each planted bug next to its twin, differing only by the fix."""
from __future__ import annotations

import json
import textwrap

import pytest
import torch
from torch import nn

import nndoctor
from helpers import toy_problem
from nndoctor.probes.watchers.optimizer import OptimizerWatcher
from test_cli import nndoctor as nndoctor_cli


def _train(schedule=None, clip: float | None = None, steps: int = 40) -> nndoctor.Monitor:
    x, y, model, opt = toy_problem(256)
    scheduler = torch.optim.lr_scheduler.LambdaLR(opt, schedule) if schedule else None
    with nndoctor.Monitor() as mon:
        for i in range(steps):
            j = (i * 32) % 256
            opt.zero_grad()
            nn.functional.cross_entropy(model(x[j:j + 32]), y[j:j + 32]).backward()
            if clip is not None:
                nn.utils.clip_grad_norm_(model.parameters(), clip)
            opt.step()
            if scheduler:
                scheduler.step()
    return mon


# ----- 1. a warm-up from learning rate 0 (Hugging Face's default schedule) ------------------------------------
def test_a_learning_rate_of_0_on_every_step_is_grd002():
    (finding,) = _train(schedule=lambda step: 0.0).report().by_code("GRD002")
    assert finding.location == "optimizer"
    assert finding.evidence["steps_at_lr_0"] == 40


def test_a_linear_warm_up_from_0_is_silent():
    mon = _train(schedule=lambda step: min(1.0, step / 10))
    assert mon.report().codes() == set()
    assert mon.run.steps == 40


def test_updates_all_masked_at_a_positive_learning_rate_is_grd002():
    # clip_grad_norm_(..., 0): every gradient scaled to 0, so SGD steps at lr > 0 and changes nothing
    (finding,) = _train(clip=0.0).report().by_code("GRD002")
    assert finding.location == "optimizer"
    assert finding.evidence["lr"] > 0 and finding.evidence["params_with_grad"] == 4


def test_updates_clipped_to_a_positive_norm_are_silent():
    assert _train(clip=1.0).report().codes() == set()


# ----- 2. "changed none" without copies of the parameters --------------------------------------------------
def test_the_update_check_holds_a_few_floats_per_parameter_tensor_not_copies():
    x, y, model, opt = toy_problem(64)
    n = len(list(model.parameters()))
    with nndoctor.Monitor() as mon:
        for _ in range(2):
            opt.zero_grad()
            nn.functional.cross_entropy(model(x), y).backward()
            opt.step()
    (watcher,) = [w for w in mon.watchers if isinstance(w, OptimizerWatcher)]
    (updates,) = watcher.updates.values()
    assert len(updates.first) == 2 * n and all(isinstance(v, float) for v in updates.first)
    assert updates.changed == n
    held = [v for v in vars(updates).values() if isinstance(v, torch.Tensor)]
    assert held == []


def test_a_single_step_run_is_still_judged_at_the_end():
    x, y, model, opt = toy_problem(64)
    for p in model.parameters():
        p.register_hook(lambda g: g * 0)  # every update masked
    with nndoctor.Monitor(model, opt) as mon:
        opt.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
    assert mon.report().codes() == {"GRD002"}


# ----- 3. an optimizer that never steps ----------------------------------------------------------------------
def _loop(step: bool, optimizer: bool = True) -> nndoctor.Report:
    x, y, model, _ = toy_problem(256)
    with nndoctor.Monitor() as mon:
        opt = torch.optim.Adam(model.parameters(), lr=1e-3) if optimizer else None  # line of creation
        for i in range(0, 256, 32):
            if opt is not None:
                opt.zero_grad()
            else:
                model.zero_grad()
            nn.functional.cross_entropy(model(x[i:i + 32]), y[i:i + 32]).backward()
            if step:
                opt.step()
    return mon.report()


def test_an_optimizer_that_never_steps_is_grd002_at_its_creation_line():
    (finding,) = _loop(step=False).by_code("GRD002")
    assert "test_live_optimizer.py:" in finding.location  # the line that built it
    assert finding.evidence["backward_calls"] == 8
    assert finding.evidence["optimizer_steps"] == 0
    assert finding.evidence["cause"] == "optimizer"


def test_the_same_loop_with_its_step_is_silent():
    assert _loop(step=True).codes() == set()


def test_gradients_without_any_optimizer_are_silent():
    # saliency maps, gradient inspection: backward every batch, nothing to step
    assert _loop(step=False, optimizer=False).codes() == set()


SCRIPT = """
import torch
from torch import nn
torch.manual_seed(0)
x, y = torch.randn(256, 10), torch.randint(0, 3, (256,))
model = nn.Sequential(nn.Linear(10, 32), nn.ReLU(), nn.Linear(32, 3))
optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
for epoch in range(3):
    for i in range(0, 256, 32):
        optimizer.zero_grad()
        nn.functional.cross_entropy(model(x[i:i + 32]), y[i:i + 32]).backward()
        {step}
"""


@pytest.mark.parametrize("step,codes", [("pass", {"GRD002"}), ("optimizer.step()", set())],
                         ids=["step-dropped", "clean"])
def test_nndoctor_run_finds_a_dropped_optimizer_step(tmp_path, step, codes):
    script = tmp_path / "train.py"
    script.write_text(textwrap.dedent(SCRIPT).format(step=step))
    out = nndoctor_cli("run", "--json", str(tmp_path / "r.json"), str(script))
    doc = json.loads((tmp_path / "r.json").read_text())
    assert {f["code"] for f in doc["findings"] if f["severity"] != "info"} == codes, out.stdout[-2000:]
    if codes:
        (finding,) = doc["findings"]
        assert finding["location"].endswith("train.py:7")
        assert finding["evidence"]["backward_calls"] == 24 and finding["evidence"]["cause"] == "optimizer"
