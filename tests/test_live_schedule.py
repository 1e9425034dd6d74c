"""Learning-rate schedules in live runs: an epoch scheduler stepped every batch (OFB005), a scheduler stepped
before its optimizer (OFB006, info), and the curve findings naming their cause from the LR trajectory
(OFB002 after a warm-up to too high a peak -> lr-schedule at the scheduler's line; at a constant LR ->
learning-rate; OFB004 at a constant tiny LR -> learning-rate). Modern schedules stay silent."""
from __future__ import annotations

import json
import math
import os

import pytest
import torch
from torch import nn

import nndoctor
from test_cli import nndoctor as nndoctor_cli

SCRIPT = os.path.join(os.path.dirname(__file__), "scripts", "lr_schedules.py")
LOUD = ("error", "warning")


def _data():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(1024, 20, generator=g)
    y = (x[:, :4] @ torch.tensor([1.0, -2.0, 1.5, 0.5]) > 0).long() + 2 * (x[:, 4] > 0).long()
    return x, y


def _train(make_scheduler=None, *, lr=0.05, epochs=8, per_batch=True, plateau=False, optimizer="sgd"):
    """A 4-class MLP under the Monitor; ``make_scheduler(optimizer, total_steps)`` builds the schedule."""
    torch.manual_seed(0)
    x, y = _data()
    model = nn.Sequential(nn.Linear(20, 64), nn.ReLU(), nn.Linear(64, 4))
    batches = 1024 // 64
    with nndoctor.Monitor() as mon:
        opt = (torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9) if optimizer == "sgd"
               else torch.optim.AdamW(model.parameters(), lr=lr))
        sched = make_scheduler(opt, epochs * batches) if make_scheduler else None
        for _ in range(epochs):
            total = 0.0
            for i in range(0, 1024, 64):
                loss = nn.functional.cross_entropy(model(x[i:i + 64]), y[i:i + 64])
                opt.zero_grad()
                loss.backward()
                opt.step()
                total += loss.item()
                if sched is not None and per_batch:
                    sched.step()
            if sched is not None and not per_batch:
                sched.step(total) if plateau else sched.step()
    return mon.report()


def _loud(report):
    return {f.code for f in report.findings if f.severity.value in LOUD}


def _one(report, code):
    found = [f for f in report.findings if f.code == code]
    assert found, [(f.code, f.message) for f in report.findings]
    return found[0]


L = torch.optim.lr_scheduler


# ----- OFB005: an epoch scheduler stepped every batch -------------------------------------------------------
def test_steplr_stepped_every_batch_collapses_the_lr_and_is_ofb005():
    report = _train(lambda o, n: L.StepLR(o, step_size=10, gamma=0.3))
    f = _one(report, "OFB005")
    assert f.severity.value == "error" and f.evidence["cause"] == "lr-schedule"
    assert f.location.endswith("test_live_schedule.py:" + str(_line("L.StepLR(o, step_size=10, gamma=0.3))")))
    assert f.evidence["scheduler"] == "StepLR" and f.evidence["final_lr"] < 1e-3 * f.evidence["peak_lr"]
    assert report.meta["extras"]["lr_curve"][0] == pytest.approx(0.05)


def test_multisteplr_per_batch_is_ofb005_and_per_epoch_is_silent():
    make = lambda o, n: L.MultiStepLR(o, milestones=[2, 4, 6], gamma=0.1)  # noqa: E731
    assert "OFB005" in _loud(_train(make))
    assert _loud(_train(make, per_batch=False)) == set()


def test_steplr_stepped_per_epoch_is_silent():
    report = _train(lambda o, n: L.StepLR(o, step_size=10, gamma=0.3), per_batch=False)
    assert _loud(report) == set()
    assert len(report.meta["extras"]["lr_curve"]) == len(report.meta["extras"]["loss_curve"])


# ----- modern schedules, stepped per batch as designed: silent ---------------------------------------------
def _nanogpt(o, n):  # warm-up then cosine to a tenth, as karpathy/nanoGPT's train.py
    warm = n // 20
    return L.LambdaLR(o, lambda s: (s + 1) / warm if s < warm else
                      0.1 + 0.45 * (1 + math.cos(math.pi * min(1.0, (s - warm) / (n - warm)))))


def _hf_linear(o, n):  # transformers.get_linear_schedule_with_warmup: from 0, then linearly to 0
    warm = n // 10
    return L.LambdaLR(o, lambda s: s / warm if s < warm else max(0.0, (n - s) / (n - warm)))


SILENT = {
    "nanoGPT warm-up + cosine (AdamW)": dict(make_scheduler=_nanogpt, lr=3e-3, optimizer="adamw"),
    "OneCycle at a sane peak": dict(make_scheduler=lambda o, n: L.OneCycleLR(o, max_lr=0.1, total_steps=n)),
    "HF linear warm-up from 0": dict(make_scheduler=_hf_linear, lr=3e-3, optimizer="adamw"),
    "cosine over the run, per batch": dict(make_scheduler=lambda o, n: L.CosineAnnealingLR(o, T_max=n)),
    "ReduceLROnPlateau": dict(make_scheduler=lambda o, n: L.ReduceLROnPlateau(o, patience=0, factor=0.1),
                              per_batch=False, plateau=True),
}


@pytest.mark.parametrize("name", SILENT)
def test_modern_schedules_are_silent(name):
    report = _train(**SILENT[name])
    assert _loud(report) == set(), [(f.code, f.message) for f in report.findings]
    assert "OFB006" not in report.codes()


# ----- OFB006 (info): the scheduler stepped before the optimizer -------------------------------------------
def test_scheduler_step_before_the_first_optimizer_step_is_info():
    torch.manual_seed(0)
    model = nn.Linear(4, 1)
    with nndoctor.Monitor() as mon:
        opt = torch.optim.SGD(model.parameters(), lr=0.1)
        sched = L.StepLR(opt, step_size=100)
        for _ in range(3):
            sched.step()  # the pre-1.1 order
            model(torch.randn(8, 4)).pow(2).mean().backward()
            opt.step()
            opt.zero_grad()
    f = _one(mon.report(), "OFB006")
    assert f.severity.value == "info" and f.location.endswith(f"test_live_schedule.py:{_line('the pre-1.1 order')}")


# ----- the curve findings name their cause -------------------------------------------------------------------
def test_divergence_at_the_peak_of_a_warm_up_names_the_schedule():
    report = _train(lambda o, n: L.LambdaLR(o, lambda s: 400 * min(1.0, (s + 1) / 20)), epochs=3)
    f = _one(report, "OFB002")
    assert f.evidence["cause"] == "lr-schedule" and f.evidence["scheduler"] == "LambdaLR"
    assert f.location.endswith("test_live_schedule.py:" + str(_line("400 * min(1.0")))
    assert f.evidence["lr_at_failure"] == pytest.approx(20.0) and f.evidence["grad_norm_history"]
    assert "NUM findings" not in " ".join(f.suggestions)


def test_warm_up_to_a_sane_peak_is_silent():
    report = _train(lambda o, n: L.LambdaLR(o, lambda s: min(1.0, (s + 1) / 20)), epochs=3)
    assert _loud(report) == set()


def test_divergence_at_a_constant_lr_names_the_learning_rate():
    report = _train(lr=20.0, epochs=2)
    f = _one(report, "OFB002")
    assert f.evidence["cause"] == "learning-rate" and f.evidence["lr_at_failure"] == pytest.approx(20.0)


def test_plateau_at_a_constant_tiny_lr_says_raise_the_learning_rate_first():
    report = _train(lr=1e-6, epochs=5)
    f = _one(report, "OFB004")
    assert f.evidence["cause"] == "learning-rate" and f.evidence["update_ratio"] < 1e-4
    assert "Raise the learning rate" in f.suggestions[0]
    assert _loud(_train(lr=0.05, epochs=5)) == set()


def _line(text: str) -> int:
    lines = open(__file__).read().splitlines()
    return next(i for i, line in enumerate(lines) if text in line and "_line(" not in line) + 1


# ----- the real CLI on an unmodified script --------------------------------------------------------------
def _script_line(text: str) -> int:
    return next(i for i, line in enumerate(open(SCRIPT).read().splitlines()) if text in line) + 1


def _cli(tmp_path, *args: str) -> dict:
    path = tmp_path / "r.json"
    out = nndoctor_cli("run", "--json", str(path), SCRIPT, *args)
    assert path.exists(), (out.stdout[-2000:], out.stderr[-2000:])
    return json.loads(path.read_text())


@pytest.mark.slow  # three CLI runs; the same judgements are tested in one process above
def test_cli_planted_schedule_bugs_and_the_fixed_script(tmp_path):
    doc = _cli(tmp_path, "--bug", "per-batch")
    (f,) = [f for f in doc["findings"] if f["code"] == "OFB005"]
    assert f["location"].endswith(f"lr_schedules.py:{_script_line('StepLR(optimizer')}")
    assert f["evidence"]["cause"] == "lr-schedule" and f["severity"] == "error"
    assert doc["meta"]["extras"]["lr_curve"]
    doc = _cli(tmp_path, "--bug", "warmup-peak")
    (f,) = [f for f in doc["findings"] if f["code"] == "OFB002"]
    assert f["location"].endswith(f"lr_schedules.py:{_script_line('LambdaLR(optimizer')}")
    assert f["evidence"]["cause"] == "lr-schedule"
    doc = _cli(tmp_path)  # the fixed twin
    assert [f["code"] for f in doc["findings"] if f["severity"] in LOUD] == []


# ----- the Lightning callback: interval "step" for a schedule written in epochs ---------------------------
@pytest.mark.parametrize("interval", ["step", "epoch"])
def test_lightning_steplr_interval(interval):
    Lt = pytest.importorskip("lightning")
    from nndoctor.integrations.lightning import NNDoctorCallback

    x, y = _data()

    class Module(Lt.LightningModule):
        def __init__(self):
            super().__init__()
            self.net = nn.Sequential(nn.Linear(20, 64), nn.ReLU(), nn.Linear(64, 4))

        def training_step(self, batch, i):
            return nn.functional.cross_entropy(self.net(batch[0]), batch[1])

        def configure_optimizers(self):
            opt = torch.optim.SGD(self.parameters(), lr=0.05, momentum=0.9)
            sched = torch.optim.lr_scheduler.StepLR(opt, step_size=10, gamma=0.3)
            return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": interval}}

    torch.manual_seed(0)
    callback = NNDoctorCallback()
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=64)
    Lt.Trainer(max_epochs=8, callbacks=[callback], enable_progress_bar=False, logger=False,
               enable_checkpointing=False, enable_model_summary=False).fit(Module(), loader)
    report = callback.report()
    if interval == "step":
        f = _one(report, "OFB005")
        assert f.evidence["cause"] == "lr-schedule" and f.evidence["scheduler"] == "StepLR"
    else:
        assert _loud(report) == set()
