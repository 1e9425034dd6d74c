"""The CUDA paths, on a real GPU; the whole module is skipped without one (CI has none: these run when a GPU
machine is lent, see CONTRIBUTING.md). Each planted bug next to its twin that differs only by the fix:
- mixed precision as users write it on a GPU: float16 autocast with a real GradScaler (NUM006, NUM007, GRD009);
- the Monitor's one host transfer per step, counted by CUDA's own synchronisation debug mode;
- a nanoGPT-style loop with bf16 autocast, eager and ``torch.compile``d with inductor, silent through the CLI;
- the playbook on a CUDA setup: silent when clean, the loss bug found, the user's model left on its device;
- memory: RUN004's fake-traced estimate confirmed by a real step, and a real allocator out-of-memory triaged;
- FSDP2 (``fully_shard``) on NCCL under torchrun.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import warnings

import pytest
import torch
from helpers import toy_problem
from test_live_amp import _amp
from torch import nn

import nndoctor

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
SCRIPTS = os.path.join(os.path.dirname(__file__), "scripts")


def _loud(codes_and_severities) -> list:
    return [f for f in codes_and_severities if f.severity.value in ("error", "warning")]


# ----- mixed precision: float16 autocast + GradScaler, as on a GPU ------------------------------------------------
# CUDA's autocast runs sum, pow, exp and softmax in float32 (the CPU's does not), so the planted losses here
# overflow in ops it leaves in float16: a product and a temperature.
@pytest.mark.parametrize("kind,kwargs,code", [
    ("abs-overflows", {"steps": 12}, "NUM006"),
    ("logits-overflow", {"steps": 24}, "NUM007"),
    ("cross-entropy", {"unscale": False, "clip": 1.0}, "GRD009"),
])
def test_planted_mixed_precision_bug_on_cuda(kind, kwargs, code):
    report = _amp(kind, device="cuda", **kwargs)
    (f,) = report.by_code(code)
    assert f.severity.value != "info" and "test_live_amp.py:" in f.location, f.message


@pytest.mark.parametrize("kind,kwargs", [("abs-fp32", {"steps": 12}), ("logits-fp32", {"steps": 24}),
                                         ("cross-entropy", {"unscale": True, "clip": 1.0}),
                                         ("cross-entropy", {"dtype": torch.bfloat16})])
def test_the_fixed_mixed_precision_twin_on_cuda_is_silent(kind, kwargs):
    assert _amp(kind, device="cuda", **kwargs).codes() == set()


# ----- the Monitor reads the device once per step ---------------------------------------------------------------
def _synchronisations(steps: int, monitored: bool) -> int:
    x, y, model, opt = toy_problem(320, device="cuda")
    loss_fn = nn.CrossEntropyLoss()

    def train():
        for i in range(steps):
            opt.zero_grad()
            loss_fn(model(x[i % 10 * 32:][:32]), y[i % 10 * 32:][:32]).backward()
            opt.step()

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        torch.cuda.set_sync_debug_mode("warn")
        try:
            if monitored:
                with nndoctor.Monitor(model, opt):
                    train()
            else:
                train()
        finally:
            torch.cuda.set_sync_debug_mode("default")
    return sum("synchroniz" in str(w.message) for w in caught)


def test_the_monitor_synchronises_with_the_gpu_about_once_per_step():
    plain = _synchronisations(70, monitored=False)
    short, long = _synchronisations(10, monitored=True), _synchronisations(70, monitored=True)
    per_step = (long - short - plain) / 60  # start and end (one-off readings) cancel out
    print(f"GPU synchronisations: plain {plain} in 70 steps; Monitor {short} in 10, {long} in 70: {per_step:.3f}/step")
    assert per_step <= 1.05, (plain, short, long)  # one per step, and a rare periodic reading


# ----- a modern loop, silent ----------------------------------------------------------------------------------------
def _run_cli(tmp_path, *args: str) -> tuple[subprocess.CompletedProcess, dict]:
    path = tmp_path / "r.json"
    out = subprocess.run([sys.executable, "-m", "nndoctor", "run", "--json", str(path), *args], capture_output=True,
                         check=False,
                         text=True, timeout=600, env={**os.environ, "NO_COLOR": "1"})
    assert path.exists(), out.stdout[-2000:] + out.stderr[-3000:]
    return out, json.loads(path.read_text())


@pytest.mark.parametrize("extra", [[], ["--compile"]], ids=["eager", "compiled"])
def test_nanogpt_style_on_cuda_with_autocast_is_silent(tmp_path, extra):
    script = os.path.join(SCRIPTS, "nanogpt_style.py")
    out, doc = _run_cli(tmp_path, script, "--device", "cuda", "--iters", "40", *extra)
    assert out.returncode == 0, out.stderr[-3000:]
    assert [f for f in doc["findings"] if f["severity"] in ("error", "warning")] == [], doc["findings"]
    assert "done" in out.stdout


# ----- the playbook on a CUDA setup -----------------------------------------------------------------------------------
def _digits_setup(softmax: bool) -> nndoctor.Setup:
    from sklearn.datasets import load_digits

    d = load_digits()
    x, y = torch.tensor(d.data, dtype=torch.float32) / 16, torch.tensor(d.target)
    torch.manual_seed(0)
    layers = [nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 10)] + ([nn.Softmax(dim=1)] if softmax else [])
    model = nn.Sequential(*layers).cuda()
    return nndoctor.Setup(model=model, train_data=(x[:1400], y[:1400]), val_data=(x[1400:], y[1400:]),
                          loss_fn=nn.CrossEntropyLoss(), batch_size=32, device="cuda")


def test_a_clean_cuda_setup_is_silent_and_the_model_stays_where_it_was():
    setup = _digits_setup(softmax=False)
    before = {k: v.clone() for k, v in setup.model.state_dict().items()}
    report = nndoctor.check(setup)
    assert _loud(report.findings) == [], [(f.code, f.message) for f in report.findings]
    assert not [c for c in report.checks if c.status == "crashed"], [(c.name, c.detail) for c in report.checks]
    assert all(p.is_cuda for p in setup.model.parameters())
    assert all(torch.equal(before[k], v) for k, v in setup.model.state_dict().items())


def test_softmax_before_cross_entropy_on_cuda_is_los001():
    report = nndoctor.check(_digits_setup(softmax=True), select=["LOS001"])
    (f,) = report.by_code("LOS001")
    assert f.severity.value == "error"


# ----- memory ------------------------------------------------------------------------------------------------
def _image_setup(batch: int = 64) -> nndoctor.Setup:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 64, 3, padding=1), nn.ReLU(), nn.Conv2d(64, 64, 3, padding=1), nn.ReLU(),
                          nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(64, 10))
    x, y = torch.randn(256, 3, 128, 128), torch.randint(0, 10, (256,))
    return nndoctor.Setup(model=model, train_data=(x, y), loss_fn=nn.CrossEntropyLoss(), batch_size=batch,
                          device="cuda")


def test_a_cnn_that_does_not_fit_a_2gib_gpu_is_run004_with_the_largest_batch_confirmed_on_the_gpu():
    setup = _image_setup(batch=256)  # ~20 MiB of activations per 128x128 image; ~0.6 GiB of the 2 GiB is CUDA's own
    setup.memory_budget = 2 * 2**30
    report = nndoctor.check(setup, select=["RUN004"])
    (f,) = report.by_code("RUN004")
    ev = f.evidence
    print("RUN004 on cuda:", ev)
    assert ev["device"] == "cuda" and 1 <= ev["largest_batch"] < 256 and ev["largest_batch_verified"], ev


def test_the_same_cnn_at_a_batch_that_fits_is_silent():
    setup = _image_setup(batch=16)
    setup.memory_budget = 2 * 2**30
    report = nndoctor.check(setup, select=["RUN004"])
    assert report.by_code("RUN004") == []


def test_a_real_out_of_memory_on_the_gpu_is_triaged():
    # a small slice of the card: the step really fails in the allocator, as on a smaller GPU
    total = torch.cuda.get_device_properties(0).total_memory
    torch.cuda.empty_cache()
    torch.cuda.set_per_process_memory_fraction(768 * 2**20 / total)
    try:
        report = nndoctor.check(_image_setup(batch=256), select=["RUN004", "RUN005"])
    finally:
        torch.cuda.set_per_process_memory_fraction(1.0)
        torch.cuda.empty_cache()
    print("real OOM:", [(f.code, f.severity.value, f.message[:300]) for f in report.findings],
          [(c.name, c.status, c.detail[:300]) for c in report.checks if c.status != "skipped"])
    (f,) = report.by_code("RUN004")
    assert f.severity.value == "error"


# ----- FSDP2 on NCCL ----------------------------------------------------------------------------------------
def _fsdp(tmp_path, *flags: str) -> tuple[subprocess.CompletedProcess, dict]:
    path = tmp_path / "fsdp.json"
    gpus = torch.cuda.device_count()
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={min(gpus, 2)}",
           "-m", "nndoctor", "run", "--json", str(path), os.path.join(SCRIPTS, "train_fsdp.py"), "--device", "cuda",
           *flags]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env={**os.environ, "NO_COLOR": "1"},
                         check=False)
    assert path.exists(), out.stdout[-3000:] + out.stderr[-3000:]
    return out, json.loads(path.read_text())


def test_fsdp_on_nccl_weights_that_never_move_are_grd002(tmp_path):
    out, doc = _fsdp(tmp_path, "--lr0")
    found = [f for f in doc["findings"] if f["code"] == "GRD002"]
    assert found and "optimizer" in found[0]["location"], (doc["findings"], out.stderr[-2000:])
    assert not [f for f in doc["findings"] if f["code"].startswith("RUN")], doc["findings"]


def test_fsdp_on_nccl_clean_script_is_silent(tmp_path):
    out, doc = _fsdp(tmp_path)
    assert out.returncode == 0, out.stderr[-3000:]
    assert [f for f in doc["findings"] if f["severity"] in ("error", "warning")] == [], doc["findings"]
