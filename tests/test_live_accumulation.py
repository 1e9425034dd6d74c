"""The order of a step's gradient events, live: zero_grad between backward and step (GRD006), inside the
micro-batch loop (GRD007), micro-batch losses summed (GRD008), clipping before backward (GRD009). Each
planted bug next to its twin that differs only by the fix; ordinary patterns that look alike (GANs, several
losses of one forward, SAM's two backward passes, Lightning's and Hugging Face's accumulation) stay silent."""
from __future__ import annotations

import json
import os

import pytest
import torch
from torch import nn

import nndoctor
from helpers import toy_problem
from test_cli import nndoctor as nndoctor_cli

SCRIPT = os.path.join(os.path.dirname(__file__), "scripts", "step_order_bugs.py")


def _loud(report) -> set[str]:
    return {f.code for f in report.findings if f.severity.value in ("error", "warning")}


def _accumulate(bug: str = "", optimizer: str = "sgd", steps: int = 8, k: int = 4, set_to_none: bool = True):
    """A gradient-accumulation loop, built inside the Monitor as a script would (k micro-batches per step)."""
    with nndoctor.Monitor() as mon:
        x, y, model, opt = toy_problem(256)
        if optimizer == "adam":
            opt = torch.optim.Adam(model.parameters(), lr=1e-3)
        for step in range(steps):
            for micro in range(k):
                if bug == "reset":
                    opt.zero_grad(set_to_none=set_to_none)
                j = (step * k + micro) * 16 % 256
                loss = nn.functional.cross_entropy(model(x[j:j + 16]), y[j:j + 16])
                (loss if bug == "summed" else loss / k).backward()
            if bug == "zero-before-step":
                opt.zero_grad(set_to_none=set_to_none)
            opt.step()
            if bug not in ("reset", "zero-before-step"):
                opt.zero_grad(set_to_none=set_to_none)
    return mon.report()


# ----- 1. zero_grad between backward and step (GRD006) ---------------------------------------------------------
@pytest.mark.parametrize("set_to_none", [True, False])
def test_zero_grad_between_backward_and_step_is_grd006(set_to_none):
    (f,) = _accumulate("zero-before-step", set_to_none=set_to_none).by_code("GRD006")
    assert f.severity.value == "error" and "test_live_accumulation.py:" in f.location
    assert f.evidence["cause"] == "gradient-handling" and f.evidence["steps_without_gradients"] == 8


def test_zero_grad_once_per_step_is_silent():
    assert _accumulate("").codes() == set()
    assert _accumulate("", set_to_none=False).codes() == set()


# ----- 2. zero_grad inside the micro-batch loop (GRD007) ---------------------------------------------------------
def test_zero_grad_inside_the_micro_batch_loop_is_grd007():
    report = _accumulate("reset")
    (f,) = report.by_code("GRD007")
    assert "test_live_accumulation.py:" in f.location
    assert f.evidence["micro_batches"] == 4 and f.evidence["cause"] == "gradient-handling"
    assert _loud(report) == {"GRD007"}


def test_zero_grad_after_a_step_that_used_the_gradients_is_silent():
    # a GAN: the generator's gradients from the discriminator's backward are zeroed on purpose, after a step
    with nndoctor.Monitor() as mon:
        torch.manual_seed(0)
        g, d = nn.Linear(4, 8), nn.Sequential(nn.Linear(8, 1))
        og, od = torch.optim.SGD(g.parameters(), lr=0.01), torch.optim.SGD(d.parameters(), lr=0.01)
        for _ in range(8):
            real, z = torch.randn(16, 8), torch.randn(16, 4)
            od.zero_grad()
            fake = g(z)  # not detached: the discriminator's backward reaches the generator too
            (d(fake).mean() - d(real).mean()).backward()
            od.step()
            og.zero_grad()
            (-d(g(z)).mean()).backward()
            og.step()
    assert _loud(mon.report()) == set()


def test_a_dcgan_discriminator_step_with_two_backward_lines_is_silent():
    # PyTorch's DCGAN example: errD_real.backward(); errD_fake.backward(); optimizerD.step() - two losses summed
    with nndoctor.Monitor() as mon:
        torch.manual_seed(0)
        g, d = nn.Linear(4, 8), nn.Sequential(nn.Linear(8, 1))
        og, od = torch.optim.SGD(g.parameters(), lr=0.01), torch.optim.SGD(d.parameters(), lr=0.01)
        bce = nn.BCEWithLogitsLoss()
        for _ in range(8):
            d.zero_grad()
            bce(d(torch.randn(16, 8)), torch.ones(16, 1)).backward()
            fake = g(torch.randn(16, 4))
            bce(d(fake.detach()), torch.zeros(16, 1)).backward()
            od.step()
            g.zero_grad()
            bce(d(fake), torch.ones(16, 1)).backward()
            og.step()
    assert mon.report().codes() == set()


def test_backward_through_torch_autograd_backward_is_followed_too():
    with nndoctor.Monitor() as mon:
        x, y, model, opt = toy_problem(256)
        for step in range(8):
            opt.zero_grad()
            for micro in range(4):
                j = (step * 4 + micro) * 8
                torch.autograd.backward(nn.functional.cross_entropy(model(x[j:j + 8]), y[j:j + 8]) / 4)
            opt.step()
    assert mon.report().codes() == set()


def test_lbfgs_closure_evaluated_several_times_per_step_is_silent():
    # the closure zeroes and runs backward at every evaluation inside step(); the parameters move in between
    with nndoctor.Monitor() as mon:
        x, y, model, _ = toy_problem(128)
        opt = torch.optim.LBFGS(model.parameters(), lr=0.5, max_iter=5)

        def closure():
            opt.zero_grad()
            loss = nn.functional.cross_entropy(model(x), y)
            loss.backward()
            return loss

        for _ in range(4):
            opt.step(closure)
    assert mon.report().codes() == set()


def test_sam_two_backward_passes_per_step_are_silent():
    # SAM: backward, perturb the weights (the gradients are used), zero_grad, backward again, step
    with nndoctor.Monitor() as mon:
        x, y, model, opt = toy_problem(128)
        for i in range(8):
            xb, yb = x[i * 16:(i + 1) * 16], y[i * 16:(i + 1) * 16]
            nn.functional.cross_entropy(model(xb), yb).backward()
            with torch.no_grad():
                eps = [0.05 * p.grad / (p.grad.norm() + 1e-12) for p in model.parameters()]
                for p, e in zip(model.parameters(), eps):
                    p.add_(e)
            opt.zero_grad()
            nn.functional.cross_entropy(model(xb), yb).backward()
            with torch.no_grad():
                for p, e in zip(model.parameters(), eps):
                    p.sub_(e)
            opt.step()
            opt.zero_grad()
    assert _loud(mon.report()) == set()


# ----- 3. micro-batch losses summed (GRD008) ---------------------------------------------------------------------
def test_summed_micro_batches_with_sgd_is_a_grd008_warning():
    (f,) = _accumulate("summed").by_code("GRD008")
    assert f.severity.value == "warning"
    assert f.evidence["micro_batches"] == 4 and f.evidence["effective_lr"] == pytest.approx(4 * 0.05)
    assert "test_live_accumulation.py:" in f.location and f.evidence["cause"] == "gradient-handling"


def test_summed_micro_batches_with_adam_is_only_info():
    report = _accumulate("summed", optimizer="adam")
    assert report.by_code("GRD008")[0].severity.value == "info"
    assert _loud(report) == set()


def test_averaged_micro_batches_are_silent():
    assert _accumulate("", optimizer="adam").codes() == set()


def test_several_losses_of_one_forward_are_not_micro_batches():
    with nndoctor.Monitor() as mon:
        x, y, model, opt = toy_problem(128)
        for i in range(8):
            opt.zero_grad()
            out = model(x[i * 16:(i + 1) * 16])
            nn.functional.cross_entropy(out, y[i * 16:(i + 1) * 16]).backward(retain_graph=True)
            (0.01 * out.pow(2).mean()).backward()
            opt.step()
    assert mon.report().codes() == set()


# ----- 4. clipping before backward (GRD009) ----------------------------------------------------------------------
def _clip_loop(before_backward: bool, max_norm: float, generator: bool = False):
    with nndoctor.Monitor() as mon:
        x, y, model, opt = toy_problem(256, lr=0.5)
        norms = []
        for i in range(8):
            opt.zero_grad()
            if before_backward:
                nn.utils.clip_grad_norm_(model.parameters(), max_norm)
            nn.functional.cross_entropy(model(x[i * 32:(i + 1) * 32]), y[i * 32:(i + 1) * 32]).backward()
            if not before_backward:
                params = (p for p in model.parameters()) if generator else model.parameters()
                norms.append(float(torch.nn.utils.clip_grad_norm_(params, max_norm)))
            opt.step()
    return mon.report(), model, norms


def test_clipping_before_backward_is_grd009_with_the_unclipped_norms():
    report, _, _ = _clip_loop(before_backward=True, max_norm=0.1)
    (f,) = report.by_code("GRD009")
    assert f.severity.value == "error" and f.evidence["unclipped_steps"] >= 4
    assert "test_live_accumulation.py:" in f.location and f.evidence["cause"] == "gradient-handling"


def test_clipping_before_backward_without_harm_is_info():
    report, _, _ = _clip_loop(before_backward=True, max_norm=1e6)
    assert report.by_code("GRD009")[0].severity.value == "info" and _loud(report) == set()


@pytest.mark.parametrize("generator", [False, True])
def test_clipping_after_backward_is_silent_and_still_clips(generator):
    report, model, norms = _clip_loop(before_backward=False, max_norm=0.1, generator=generator)
    assert report.codes() == set()
    assert all(n > 0.1 for n in norms)  # the user's clip ran on every parameter and returned the total norm
    total = torch.linalg.vector_norm(torch.stack([p.grad.norm() for p in model.parameters()]))
    assert float(total) == pytest.approx(0.1, rel=1e-3)


def test_clip_grad_norm_with_an_infinite_threshold_reads_the_norm_and_is_silent():
    report, _, _ = _clip_loop(before_backward=True, max_norm=float("inf"))
    assert report.codes() == set()


def test_the_patches_are_removed_after_the_run():
    originals = (torch.optim.Optimizer.zero_grad, nn.Module.zero_grad, torch.nn.utils.clip_grad_norm_,
                 torch.nn.utils.clip_grad.clip_grad_value_, torch.amp.GradScaler.scale, torch.amp.GradScaler.step)
    _accumulate("")
    assert originals == (torch.optim.Optimizer.zero_grad, nn.Module.zero_grad, torch.nn.utils.clip_grad_norm_,
                         torch.nn.utils.clip_grad.clip_grad_value_, torch.amp.GradScaler.scale,
                         torch.amp.GradScaler.step)


# ----- frameworks: their accumulation and clipping are silent ---------------------------------------------------
def test_lightning_accumulation_with_clipping_is_silent():
    pl = pytest.importorskip("lightning.pytorch")
    from nndoctor.integrations.lightning import NNDoctorCallback

    class Module(pl.LightningModule):
        def __init__(self):
            super().__init__()
            self.net = nn.Sequential(nn.Linear(10, 32), nn.ReLU(), nn.Linear(32, 3))

        def training_step(self, batch, _):
            return nn.functional.cross_entropy(self.net(batch[0]), batch[1])

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.05)

    x, y, _, _ = toy_problem(384)
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=32)
    callback = NNDoctorCallback()
    pl.Trainer(max_epochs=1, callbacks=[callback], logger=False, enable_checkpointing=False, accumulate_grad_batches=3,
               gradient_clip_val=0.5, enable_progress_bar=False, enable_model_summary=False, accelerator="cpu",
               devices=1).fit(Module(), loader)
    report = callback.report()
    assert report.meta["steps"] == 4
    assert report.codes() & {"GRD006", "GRD007", "GRD008", "GRD009"} == set() and _loud(report) == set()


def _lightning_manual(zero_between: bool):
    pl = pytest.importorskip("lightning.pytorch")
    from nndoctor.integrations.lightning import NNDoctorCallback

    class Module(pl.LightningModule):
        def __init__(self):
            super().__init__()
            self.automatic_optimization = False
            self.net = nn.Sequential(nn.Linear(10, 32), nn.ReLU(), nn.Linear(32, 3))

        def training_step(self, batch, _):
            opt = self.optimizers()
            if not zero_between:
                opt.zero_grad()
            self.manual_backward(nn.functional.cross_entropy(self.net(batch[0]), batch[1]))
            if zero_between:
                opt.zero_grad()
            opt.step()

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.05)

    x, y, _, _ = toy_problem(256)
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=32)
    callback = NNDoctorCallback()
    pl.Trainer(max_epochs=1, callbacks=[callback], logger=False, enable_checkpointing=False, enable_progress_bar=False,
               enable_model_summary=False, accelerator="cpu", devices=1).fit(Module(), loader)
    return callback.report()


def test_lightning_manual_optimization_zeroing_before_step_is_grd006():
    (f,) = _lightning_manual(zero_between=True).by_code("GRD006")
    assert "test_live_accumulation.py:" in f.location and f.evidence["cause"] == "gradient-handling"


def test_lightning_manual_optimization_in_order_is_silent():
    assert _loud(_lightning_manual(zero_between=False)) == set()


def test_hugging_face_gradient_accumulation_with_clipping_is_silent():
    transformers = pytest.importorskip("transformers")
    import tempfile

    from nndoctor.integrations.huggingface import NNDoctorCallback
    from scripts.tiny_bert import build

    model, dataset = build()
    callback = NNDoctorCallback()
    with tempfile.TemporaryDirectory() as out:
        args = transformers.TrainingArguments(output_dir=out, num_train_epochs=1, per_device_train_batch_size=8,
                                              gradient_accumulation_steps=2, max_grad_norm=0.5, learning_rate=5e-4,
                                              report_to=[], save_strategy="no", logging_strategy="no", use_cpu=True,
                                              disable_tqdm=True)
        transformers.Trainer(model=model, args=args, train_dataset=dataset, callbacks=[callback]).train()
    report = callback.report()
    assert report.meta["steps"] > 1 and report.codes() & {"GRD006", "GRD007", "GRD008", "GRD009"} == set()
    assert _loud(report) == set()


# ----- the real CLI on an unmodified script: each planted bug and the fixed script ------------------------------
def _line(after: str, text: str) -> int:
    """The script's line number of the first ``text`` after the line holding ``after``."""
    lines = open(SCRIPT).read().splitlines()
    start = next(i for i, line in enumerate(lines) if after in line)
    return next(i for i, line in enumerate(lines) if i > start and text in line) + 1


CLI = [("accumulation-reset", "GRD007", _line('bug == "accumulation-reset"', "zero_grad")),
       pytest.param("not-averaged", "GRD008", _line("", ".backward()"), marks=pytest.mark.slow),  # in-process tests cover it
       pytest.param("zero-before-step", "GRD006", _line('bug == "zero-before-step"', "zero_grad"), marks=pytest.mark.slow),
       ("clip-before-backward", "GRD009", _line('bug == "clip-before-backward"', "clip_grad_norm_"))]


def _run(tmp_path, *args: str) -> dict:
    path = tmp_path / "r.json"
    out = nndoctor_cli("run", "--json", str(path), SCRIPT, *args)
    assert path.exists(), (out.stdout[-2000:], out.stderr[-2000:])
    return json.loads(path.read_text())


@pytest.mark.parametrize("bug,code,line", CLI, ids=[c for _, c, _ in (getattr(p, "values", p) for p in CLI)])
def test_planted_step_order_bug_through_the_cli(tmp_path, bug, code, line):
    doc = _run(tmp_path, "--bug", bug)
    found = [f for f in doc["findings"] if f["code"] == code]
    assert found and found[0]["location"].endswith(f"step_order_bugs.py:{line}"), doc["findings"]
    assert found[0]["evidence"]["cause"] == "gradient-handling"
    assert found[0]["severity"] in ("error", "warning")

# The fixed script (no --bug) through the CLI: test_live_amp.py runs it, under --amp (the same loop with the
# GradScaler on: zero_grad once per step, loss / ACCUM, unscale_ before the clip).
