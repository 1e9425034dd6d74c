"""Mixed precision, live, on CPU (torch.autocast("cpu", float16) and torch.amp.GradScaler("cpu")): a loss
computed in float16 (NUM006), a GradScaler that skips most steps (NUM007), clipping of gradients the scaler
has not unscaled (GRD009). Each planted bug next to its twin that differs only by the fix."""
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


def _amp(loss_kind: str = "cross-entropy", unscale: bool = True, clip: float | None = 0.5,
         dtype=torch.float16, steps: int = 10, device: str = "cpu"):
    with nndoctor.Monitor() as mon:
        x, y, model, opt = toy_problem(320, device=device)
        scaler = torch.amp.GradScaler(device, enabled=dtype == torch.float16)
        for i in range(steps):
            j = i * 32 % 320
            xb, yb = x[j:j + 32], y[j:j + 32]
            opt.zero_grad()
            with torch.autocast(device, dtype=dtype):
                out = model(xb)
                if loss_kind == "cross-entropy":  # autocast runs it in float32
                    loss = nn.functional.cross_entropy(out, yb)
                elif loss_kind == "mean-square":  # written by hand: float16
                    loss = ((out - nn.functional.one_hot(yb, 3)) ** 2).mean()
                elif loss_kind == "mean-square-fp32":
                    loss = ((out.float() - nn.functional.one_hot(yb, 3)) ** 2).mean()
                elif loss_kind in ("softmax-by-hand", "softmax-by-hand-fp32"):  # exp(20) overflows float16
                    logits = out * 20 if loss_kind == "softmax-by-hand" else out.float() * 20
                    p = logits.exp() / logits.exp().sum(1, keepdim=True)
                    loss = -p.gather(1, yb[:, None]).log().mean()
                elif loss_kind == "abs-overflows":  # no op here that autocast runs in float32, on CPU or CUDA
                    loss = ((out - 100) * 1000).abs().mean()
                elif loss_kind == "abs-fp32":
                    loss = ((out.float() - 100) * 1000).abs().mean()
                elif loss_kind in ("logits-overflow", "logits-fp32"):  # a temperature that passes 65504 in float16
                    logits = out * 1e5 if loss_kind == "logits-overflow" else out.float() * 1e5
                    loss = nn.functional.cross_entropy(logits, yb)
                elif loss_kind == "sum-overflows":  # the sum passes float16's 65504 before the division
                    loss = ((out - 100) ** 2).sum() / 1000
                else:
                    loss = ((out.float() - 100) ** 2).sum() / 1000
            scaler.scale(loss).backward()
            if clip is not None:
                if unscale:
                    scaler.unscale_(opt)
                torch.nn.utils.clip_grad_norm_(model.parameters(), clip)
            scaler.step(opt)
            scaler.update()
    return mon.report()


# ----- NUM006 low-precision loss, NUM007 skipped steps -----------------------------------------------------
def test_a_float16_loss_that_overflows_is_num006():
    # the sum is Inf in float16 (its gradient is finite: the steps apply, the loss curve is lost)
    report = _amp("sum-overflows", steps=12)
    (low,) = report.by_code("NUM006")
    assert low.severity.value == "warning" and low.evidence["non_finite"] == 12 and low.evidence["dtype"] == "float16"
    assert "test_live_amp.py:" in low.location and low.evidence["cause"] == "numerics"
    assert "NUM007" not in report.codes()
    # the curve "explodes" from the first step with steady gradients: not the learning rate's doing
    (curve,) = report.by_code("OFB002")
    assert "cause" not in curve.evidence and "step size did not drive it" in curve.message


def test_the_same_loss_in_float32_is_silent():
    assert _amp("sum-fp32", steps=12).codes() == set()


def test_a_scaler_that_skips_every_step_is_num007():
    # a softmax written by hand in float16: exp overflows, Inf/Inf is NaN, every step is skipped
    report = _amp("softmax-by-hand", steps=24)
    (skipped,) = report.by_code("NUM007")
    assert skipped.evidence["skipped_steps"] >= 20 and skipped.evidence["last_scale"] < 1
    assert skipped.evidence["cause"] == "numerics" and "test_live_amp.py:" in skipped.location


def test_the_same_softmax_in_float32_is_silent():
    assert _amp("softmax-by-hand-fp32", steps=24).codes() == set()


def test_a_scaler_finding_its_level_is_silent():
    # large gradients: the first steps are skipped while the scale halves from 65536, by design
    with nndoctor.Monitor() as mon:
        x, y, model, opt = toy_problem(320, lr=1e-4)
        scaler = torch.amp.GradScaler("cpu")
        for i in range(24):
            opt.zero_grad()
            with torch.autocast("cpu", dtype=torch.float16):
                loss = nn.functional.cross_entropy(model(x[i % 10 * 32:][:32]), y[i % 10 * 32:][:32]) * 1000
            scaler.scale(loss).backward()
            scaler.step(opt)
            scaler.update()
    report = mon.report()
    (w,) = [w for w in mon.watchers if w.name == "mixed-precision"]
    assert w.leading_skipped >= 5 and w.skipped < 12
    assert report.codes() == set()


def test_a_float16_loss_without_overflow_is_info():
    report = _amp("mean-square")
    (low,) = report.by_code("NUM006")
    assert low.severity.value == "info" and low.evidence["non_finite"] == 0
    assert _loud(report) == set()


def test_a_float32_loss_under_autocast_is_silent():
    assert _amp("mean-square-fp32").codes() == set()
    assert _amp("cross-entropy").codes() == set()


def test_bfloat16_autocast_with_cross_entropy_is_silent():
    assert _amp("cross-entropy", dtype=torch.bfloat16).codes() == set()


def test_a_bfloat16_loss_is_num006():
    assert _amp("mean-square", dtype=torch.bfloat16).by_code("NUM006")[0].evidence["dtype"] == "bfloat16"


# ----- GRD009 clipping scaled gradients ---------------------------------------------------------------------
def test_clipping_gradients_the_scaler_has_not_unscaled_is_grd009():
    report = _amp(unscale=False, clip=1.0)
    (f,) = report.by_code("GRD009")
    assert f.severity.value == "error" and f.evidence["scale"] == 65536.0
    assert f.evidence["max_extra_shrink"] > 100 and f.evidence["cause"] == "gradient-handling"
    assert "test_live_amp.py:" in f.location


def test_clipping_after_unscale_is_silent():
    assert _amp(unscale=True, clip=1.0).codes() == set()


# ----- through the real CLI -------------------------------------------------------------------------------------
def _run(tmp_path, *args: str) -> dict:
    path = tmp_path / "r.json"
    out = nndoctor_cli("run", "--json", str(path), SCRIPT, *args)
    assert path.exists(), (out.stdout[-2000:], out.stderr[-2000:])
    return json.loads(path.read_text())


@pytest.mark.parametrize("bug,codes", [("clip-scaled", {"GRD009"}),  # the others: in-process tests
                                       pytest.param("low-precision-loss", {"NUM006"}, marks=pytest.mark.slow),
                                       pytest.param("softmax-by-hand", {"NUM007"}, marks=pytest.mark.slow)])
def test_planted_mixed_precision_bug_through_the_cli(tmp_path, bug, codes):
    doc = _run(tmp_path, "--bug", bug)
    found = {f["code"]: f for f in doc["findings"]}
    assert codes <= set(found), doc["findings"]
    for code in codes:
        assert "step_order_bugs.py:" in found[code]["location"] and found[code]["severity"] != "info"


def test_the_fixed_mixed_precision_script_is_silent_through_the_cli(tmp_path):
    assert _run(tmp_path, "--amp")["findings"] == []


# ----- a nanoGPT-style loop (karpathy/nanoGPT train.py's step): silent ---------------------------------------
def _nanogpt_style(dtype: torch.dtype, compile_model: bool = False, steps: int = 5):
    import math

    class Block(nn.Module):
        def __init__(self, d: int):
            super().__init__()
            self.ln1, self.ln2 = nn.LayerNorm(d), nn.LayerNorm(d)
            self.qkv, self.proj = nn.Linear(d, 3 * d), nn.Linear(d, d)
            self.mlp = nn.Sequential(nn.Linear(d, 4 * d), nn.GELU(), nn.Linear(4 * d, d), nn.Dropout(0.1))

        def forward(self, x):
            b, t, d = x.shape
            q, k, v = self.qkv(self.ln1(x)).view(b, t, 3, 2, d // 2).permute(2, 0, 3, 1, 4)
            y = nn.functional.scaled_dot_product_attention(q, k, v, is_causal=True, dropout_p=0.1 if self.training else 0)
            x = x + self.proj(y.transpose(1, 2).reshape(b, t, d))
            return x + self.mlp(self.ln2(x))

    class GPT(nn.Module):
        def __init__(self, vocab: int = 32, d: int = 32, t: int = 16):
            super().__init__()
            self.wte, self.wpe = nn.Embedding(vocab, d), nn.Embedding(t, d)
            self.blocks, self.ln_f = nn.Sequential(Block(d), Block(d)), nn.LayerNorm(d)
            self.head = nn.Linear(d, vocab, bias=False)
            self.head.weight = self.wte.weight  # weight tying

        def forward(self, idx, targets):
            x = self.wte(idx) + self.wpe(torch.arange(idx.shape[1]))
            logits = self.head(self.ln_f(self.blocks(x)))
            return logits, nn.functional.cross_entropy(logits.view(-1, logits.size(-1)), targets.view(-1))

    with nndoctor.Monitor() as mon:
        torch.manual_seed(0)
        data = torch.randint(0, 32, (4096,))
        model = GPT()
        decay = [p for p in model.parameters() if p.dim() >= 2]
        no_decay = [p for p in model.parameters() if p.dim() < 2]
        opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.1}, {"params": no_decay, "weight_decay": 0.0}],
                                lr=1e-3, betas=(0.9, 0.95))
        scaler = torch.amp.GradScaler("cpu", enabled=dtype == torch.float16)
        net = torch.compile(model) if compile_model else model
        accum, warmup = 4, 2
        for it in range(steps):
            lr = 1e-3 * (it + 1) / warmup if it < warmup else 1e-4 + 0.5 * (1 + math.cos(math.pi * it / steps)) * 9e-4
            for group in opt.param_groups:
                group["lr"] = lr
            for micro in range(accum):
                ix = torch.randint(0, len(data) - 17, (8,))
                x, y = torch.stack([data[i:i + 16] for i in ix]), torch.stack([data[i + 1:i + 17] for i in ix])
                with torch.autocast("cpu", dtype=dtype):
                    _, loss = net(x, y)
                    loss = loss / accum
                scaler.scale(loss).backward()
            scaler.unscale_(opt)
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            scaler.step(opt)
            scaler.update()
            opt.zero_grad(set_to_none=True)
    return mon


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16], ids=["bf16", "fp16-scaler"])
def test_a_nanogpt_style_loop_is_silent(dtype):
    mon = _nanogpt_style(dtype)
    assert _loud(mon.report()) == set(), mon.report().findings
    assert mon.report().codes() & {"GRD006", "GRD007", "GRD008", "GRD009", "NUM006", "NUM007"} == set()


# ----- NaN/Inf under autocast: the replay of the step runs under the same autocast -----------------------------
class _Overflows(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc, self.out = nn.Linear(10, 16), nn.Linear(16, 3)

    def forward(self, x):
        h = self.fc(x)
        h = h * torch.exp(h * 8)  # above 11 exp overflows float16, not float32
        return self.out(h / h.sum(1, keepdim=True).abs().clamp_min(1))


def test_a_float16_overflow_under_autocast_is_located_at_its_op():
    with nndoctor.Monitor() as mon:
        torch.manual_seed(0)
        x, y = torch.randn(128, 10) * 3, torch.randint(0, 3, (128,))
        model = _Overflows()
        opt = torch.optim.SGD(model.parameters(), lr=0.01)
        for i in range(3):
            opt.zero_grad()
            with torch.autocast("cpu", dtype=torch.float16):
                out = model(x[i * 32:(i + 1) * 32])
            nn.functional.cross_entropy(out.float(), y[i * 32:(i + 1) * 32]).backward()
            opt.step()
    (f,) = mon.report().by_code("NUM001")
    assert f.evidence["op"] == "exp" and "test_live_amp.py:" in f.location


def test_steps_skipped_for_an_overflow_in_the_model_name_its_op():
    # with a GradScaler the overflowing steps never reach the optimizer: NUM007 replays the forward itself
    with nndoctor.Monitor() as mon:
        torch.manual_seed(0)
        x, y = torch.randn(128, 10) * 3, torch.randint(0, 3, (128,))
        model = _Overflows()
        opt = torch.optim.SGD(model.parameters(), lr=0.01)
        scaler = torch.amp.GradScaler("cpu")
        for i in range(24):
            j = i % 4 * 32
            opt.zero_grad()
            with torch.autocast("cpu", dtype=torch.float16):
                out = model(x[j:j + 32])
            scaler.scale(nn.functional.cross_entropy(out.float(), y[j:j + 32])).backward()
            scaler.step(opt)
            scaler.update()
    (f,) = mon.report().by_code("NUM007")
    assert f.evidence["op"] == "exp" and "test_live_amp.py:" in f.location
