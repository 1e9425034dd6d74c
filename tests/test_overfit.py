"""The single-batch instruments against slow, obvious references, and the overfit step's own promises
(confirmations, verified fixes, a reproducible learning-rate range test)."""
from __future__ import annotations

import math
import time
from types import SimpleNamespace

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import Dataset

import nndoctor
from nndoctor.catalogue import Severity
from nndoctor.checks.lr_range import lr_range
from nndoctor.checks.overfit_experiment import experiment
from nndoctor.checks.verified_fixes import verify_fixes
from nndoctor.context import Context
from nndoctor.probes import curve
from nndoctor.probes.grad_stats import GradReach, GradStats
from nndoctor.probes.repeat_read import read_twice
from nndoctor.probes.single_batch import OneBatch, TaskMeter, Variant, descent_check

from cases.clean_models import CLEAN
from cases.data_sources import digits
from cases.ofb_cases import _digits
from helpers import clean_report, run_checked


# ----- curve shapes ------------------------------------------------------------------------------------
@pytest.mark.parametrize("values, kind", [
    ([2.3, 5.0, 30.0, 2.2], "explodes"),
    ([2.3, 2.0, math.nan], "explodes"),
    ([2.3, 2.4, 2.6, 2.9, 3.1], "rises"),
    ([2.3, 1.0, 0.5, 1.6, 0.6, 1.5, 0.7, 1.4], "oscillates"),
    ([2.3, 2.29, 2.3, 2.3, 2.29, 2.3, 2.3, 2.3], "plateaus"),
    ([2.3 * 0.99**i for i in range(100)], "descends"),
])
def test_curve_shapes(values, kind):
    assert curve.describe(values).kind == kind


def test_dropout_noise_is_not_oscillation():
    g = torch.Generator().manual_seed(0)
    noisy = [2.3 * 0.98**i + 0.05 * float(torch.rand(1, generator=g)) for i in range(200)]
    assert curve.describe(noisy).kind == "descends"


def test_downsample_keeps_both_ends():
    steps, values = curve.downsample([float(i) for i in range(1000)], 100)
    assert len(steps) == 100 and steps[0] == 0 and steps[-1] == 999 and values[-1] == 999.0


# ----- gradient statistics against plain autograd --------------------------------------------------------
def test_grad_stats_match_a_plain_loop_with_one_host_transfer_per_step(monkeypatch):
    torch.manual_seed(0)

    class WithUnused(nn.Sequential):
        def __init__(self) -> None:
            super().__init__(nn.Linear(8, 16), nn.Tanh(), nn.Linear(16, 3))
            self.unused = nn.Linear(2, 2)  # requires grad, never called: no gradient

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self[2](self[1](self[0](x)))

    model = WithUnused()
    x, y = torch.randn(32, 8), torch.randint(0, 3, (32,))
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    stats = GradStats(model)
    syncs = []
    real_tolist = torch.Tensor.tolist
    monkeypatch.setattr(torch.Tensor, "tolist", lambda t: syncs.append(1) or real_tolist(t))
    expected = []
    for _ in range(3):
        opt.zero_grad(set_to_none=True)
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        before = {n: p.detach().clone() for n, p in model.named_parameters()}
        grads = {n: None if p.grad is None else p.grad.norm().item() for n, p in model.named_parameters()}
        stats.before_step()
        opt.step()
        n_syncs = len(syncs)
        values = stats.after_step([loss.detach()])
        assert len(syncs) - n_syncs == 1
        assert values == pytest.approx([loss.item()])
        expected.append((grads, {n: before[n].norm().item() for n in before},
                         {n: (p.detach() - before[n]).norm().item() for n, p in model.named_parameters()}))
    for step, (grads, weights, updates) in enumerate(expected):
        for j, name in enumerate(stats.names):
            if grads[name] is None:
                assert not stats.has_grad[step, j] and math.isnan(stats.grad_norm[step, j])
            else:
                assert stats.grad_norm[step, j] == pytest.approx(grads[name], rel=1e-5)
            assert stats.weight_norm[step, j] == pytest.approx(weights[name], rel=1e-5)
            assert stats.update_norm[step, j] == pytest.approx(updates[name], rel=1e-4, abs=1e-7)
    assert stats.names[-1].startswith("unused") and not stats.has_grad[:, -1].any()


class Branches(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.detached = nn.Linear(4, 4)
        self.frozen_by_no_grad = nn.Linear(4, 4)
        self.unused = nn.Linear(4, 4)
        self.head = nn.Linear(8, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = self.detached(x).detach()
        with torch.no_grad():
            b = self.frozen_by_no_grad(x)
        return self.head(torch.cat([a, b], dim=1))


def test_grad_reach_tells_detach_no_grad_and_unused_apart():
    model = Branches()
    with GradReach(model) as reach:
        model(torch.randn(5, 4))
    assert reach.modules["detached"].output_requires_grad
    assert reach.modules["detached"].detached_into is None  # cat copies: the memory is not the same
    assert not reach.modules["frozen_by_no_grad"].output_requires_grad
    assert "unused" not in reach.modules
    assert not any(m._forward_hooks or m._forward_pre_hooks for m in model.modules())


def test_grad_reach_follows_the_detached_memory():
    enc, head = nn.Linear(4, 4), nn.Linear(4, 2)
    with GradReach(nn.ModuleDict({"enc": enc, "head": head})) as reach:
        head(enc(torch.randn(3, 4)).detach())
    assert reach.modules["enc"].detached_into == "head"


# ----- the task's own error ------------------------------------------------------------------------
def test_task_meter_measures_the_task_not_the_users_loss():
    logits = torch.tensor([[2.0, 0.0], [0.0, 2.0], [2.0, 0.0]])
    y = torch.tensor([0, 1, 1])
    meter = TaskMeter.build("classification", lambda o, t: -F.cross_entropy(o, t), logits, y)
    task_loss, error = meter(logits)
    assert task_loss.item() == pytest.approx(F.cross_entropy(logits, y).item())
    assert error.item() == pytest.approx(1 / 3)
    targets = torch.tensor([[1.0], [3.0]])
    regression = TaskMeter.build("regression", nn.MSELoss(), torch.zeros(2, 1), targets)
    assert regression(torch.tensor([[2.0], [2.0]]))[1].item() == pytest.approx(1.0)  # MSE 1 over variance 1
    probabilities = torch.tensor([[0.9], [0.2]])
    binary = TaskMeter.build("binary", nn.BCELoss(), probabilities, torch.tensor([[1.0], [1.0]]))
    assert binary(probabilities)[1].item() == pytest.approx(0.5)  # thresholded at 0.5, not 0
    assert TaskMeter.build("classification", nn.CrossEntropyLoss(), logits, torch.tensor([0, 5, 1])) is None


# ----- which way one step goes -------------------------------------------------------------------------
@pytest.mark.parametrize("bug", ["none", "negated", "maximize"])
def test_descent_check_finds_the_flipped_sign(bug):
    loss_fn = (lambda o, t: -F.cross_entropy(o, t)) if bug == "negated" else nn.CrossEntropyLoss()
    setup = _digits(lambda p: torch.optim.Adam(p, lr=1e-3, maximize=bug == "maximize"), loss_fn=loss_fn)
    ctx = Context(setup)
    trainer = OneBatch(ctx, ctx.first_batch(), Variant(), kind="classification", error_ok=0.02, loss_ok=0.05)
    d = descent_check(trainer)
    assert d.descent_change < 0  # down the task loss's gradient, it falls
    assert (d.cos_update_task > 0) == (bug != "none") and (d.task_change > 0) == (bug != "none")
    assert (d.cos_loss_task < 0) == (bug == "negated")
    assert (d.cos_update_loss > 0) == (bug == "maximize")


# ----- trainers ----------------------------------------------------------------------------------------
def test_trainers_keep_their_own_rng_stream():
    """Interleaving two runs (dropout) gives the same curves as running them one after the other."""
    def build():
        torch.manual_seed(0)
        train, _ = digits()
        model = nn.Sequential(nn.Linear(64, 32), nn.ReLU(), nn.Dropout(0.5), nn.Linear(32, 10))
        ctx = Context(nndoctor.Setup(model=model, train_data=train, loss_fn=nn.CrossEntropyLoss()))
        return [OneBatch(ctx, ctx.first_batch(), Variant(label=str(i)), kind="classification", error_ok=0.0,
                        loss_ok=0.0, seed=i) for i in range(2)]

    far = time.monotonic() + 60
    a, b = build()
    for _ in range(3):
        a.advance(a.steps + 5, far)
        b.advance(b.steps + 5, far)
    c, d = build()
    c.advance(15, far)
    d.advance(15, far)
    assert a.loss == c.loss and b.loss == d.loss and a.loss != b.loss


# ----- the batch read twice ------------------------------------------------------------------------------
class RedrawnLabels(Dataset):
    def __len__(self) -> int:
        return 20

    def __getitem__(self, i: int):
        return torch.ones(3) * i, int(torch.randint(0, 3, ()))  # bug: the label is drawn on every read


def test_read_twice_notices_labels_drawn_on_every_read():
    from nndoctor.data import DataSource

    torch.manual_seed(0)
    result = read_twice(DataSource(RedrawnLabels()))
    assert result.targets_differ and not result.inputs_differ
    assert read_twice(DataSource((torch.randn(10, 3), torch.arange(10)))).identical


# ----- verified fixes of other families' findings --------------------------------------------------------
def test_a_final_softmax_before_cross_entropy_is_removed_on_a_copy_and_verified():
    torch.manual_seed(0)
    train, _ = digits()
    model = nn.Sequential(nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 10), nn.Softmax(dim=1))
    ctx = Context(nndoctor.Setup(model=model, train_data=train, loss_fn=nn.CrossEntropyLoss()))
    ctx.run_ok = True
    finding = SimpleNamespace(code="LOS001", location="model.3", evidence={}, message="Softmax before CE.",
                              severity=Severity.ERROR)
    verify_fixes(ctx, [finding])
    fixed = finding.evidence["verified_fix"]
    assert fixed["verified"], fixed
    assert fixed["after"]["task_loss"]["end"] < 0.5 * fixed["before"]["task_loss"]["end"]
    assert "model.3 (Softmax) replaced by nn.Identity" in finding.message
    assert isinstance(model[3], nn.Softmax)  # the user's model is untouched
    assert any(label.startswith("LOS001 fix") for label in ctx.extras["overfit"]["curves"])


# ----- the learning-rate range test ------------------------------------------------------------------------
def test_range_test_suggestion_does_not_change_with_the_seed():
    suggestions = set()
    for seed in range(3):
        ctx = Context(_digits(lambda p: torch.optim.Adam(p, lr=1e-3)), seed=seed)
        ctx.run_ok = True
        sweep = lr_range(experiment(ctx))
        suggestions.add(sweep.lr(sweep.suggested))
        assert sweep.confirmation is not None and sweep.confirmation.converged
    assert len(suggestions) == 1, suggestions


@pytest.mark.parametrize("name", sorted(CLEAN))
def test_every_clean_model_overfits_one_batch(name):
    report = clean_report(name)  # the full playbook, shared with test_clean_models
    assert report.by_code("OFB000"), [(f.code, f.message) for f in report.findings if f.code[:3] in ("OFB", "GRD")]
    loud = [f.code for f in report.findings if f.code[:3] in ("OFB", "GRD") and f.severity.value != "info"]
    assert not loud


def test_update_ratio_is_measured_per_layer_for_the_report():
    report = run_checked(_digits(lambda p: torch.optim.Adam(p, lr=1e-3)), select=["GRD", "OFB"])
    layers = report.meta["extras"]["gradients"]["layers"]
    assert [row["name"] for row in layers] == ["model.0", "model.2"]
    assert all(1e-5 < row["update_ratio"] < 1e-1 for row in layers)
    assert np.isfinite([row["grad_norm"] for row in layers]).all()
    ofb = report.by_code("OFB000")[0]
    assert ofb.evidence["curve"][0] == pytest.approx(ofb.evidence["loss"]["start"], rel=1e-2)
    assert len(ofb.evidence["curve"]) == len(ofb.evidence["curve_steps"]) <= 100


@pytest.mark.parametrize("build, code", [
    (lambda: _digits(lambda p: torch.optim.Adam(p, lr=1e-3, maximize=True)), "OFB001"),
    (lambda: _digits(lambda p: torch.optim.SGD(p, lr=10.0)), "OFB002"),
    (lambda: _digits(lambda p: torch.optim.Adam(p, lr=1e-3, weight_decay=10.0)), "OFB004"),
])
def test_the_reading_comes_with_the_fix_verified(build, code):
    report = run_checked(build(), select=["OFB"])
    fixed = report.by_code(code)[0].evidence["verified_fix"]
    assert fixed["verified"] and fixed["after"]["converged_at"] is not None
    assert fixed["before"]["converged_at"] is None


def test_an_optimizer_built_for_another_model_is_rebuilt_and_verified():
    from cases.grd_cases import _optimizer_for_another_model

    report = run_checked(_optimizer_for_another_model(fixed=False), select=["GRD"])
    finding = report.by_code("GRD002")[0]
    assert finding.evidence["verified_fix"]["verified"] and "Verified on a copy" in finding.message


# ----- a large batch -------------------------------------------------------------------------------------
def test_a_large_batch_is_overfit_on_a_sub_batch_and_the_message_says_so():
    torch.manual_seed(0)
    train, _ = digits()
    model = nn.Sequential(nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 10))
    setup = nndoctor.Setup(model=model, train_data=train, loss_fn=nn.CrossEntropyLoss(), batch_size=256,
                           optimizer=lambda p: torch.optim.Adam(p, lr=1e-2))
    report = run_checked(setup, select=["OFB000"])
    found = report.by_code("OFB000")[0]
    assert found.evidence["samples"] == 64 and found.evidence["batch_size"] == 256
    assert "one batch of 64 samples (the first 64 of a batch of 256)" in found.message
