"""Wasted compute, live (EFF001-EFF005): always info, measured on the run, silent on the fixed twin.

- EFF001 a step waiting on its data: a Dataset that sleeps in __getitem__ next to the same samples in memory;
- EFF002 weight decay on biases/norms/embeddings: AdamW over every parameter next to nanoGPT's two groups;
- EFF003-EFF005 (GPU): the decisions with explicit inputs, and the watcher's one-forward reading exercised on
  CPU under bfloat16 autocast (``tests/test_cuda_efficiency.py`` runs them on a real GPU);
- the same through ``nndoctor run`` on an unmodified script and its fixed twin.
"""
from __future__ import annotations

import json
import os
import time

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

import nndoctor
from nndoctor.checks import live_efficiency as eff
from nndoctor.probes.watchers import gpu_usage
from nndoctor.probes.watchers.gpu_usage import Forward, Layer
from test_cli import nndoctor as nndoctor_cli

SCRIPT = os.path.join(os.path.dirname(__file__), "scripts", "efficiency.py")


def _loud(report) -> set[str]:
    return {f.code for f in report.findings if f.severity.value in ("error", "warning")}


def _eff(report) -> set[str]:
    return {f.code for f in report.findings if f.code.startswith("EFF")}


class Samples(Dataset):
    def __init__(self, n: int, decode_seconds: float):
        g = torch.Generator().manual_seed(0)
        self.x, self.y = torch.randn(n, 10, generator=g), torch.randint(0, 3, (n,), generator=g)
        self.decode_seconds = decode_seconds

    def __len__(self):
        return len(self.x)

    def __getitem__(self, i):
        if self.decode_seconds:
            time.sleep(self.decode_seconds)  # stands for reading and decoding a file
        return self.x[i], self.y[i]


def _loop(decode_seconds: float = 0.0, groups: str = "split", batches: int = 14, batch_size: int = 4):
    torch.manual_seed(0)
    with nndoctor.Monitor() as mon:
        model = nn.Sequential(nn.Linear(10, 32), nn.LayerNorm(32), nn.ReLU(), nn.Linear(32, 3))
        params = list(model.parameters())
        if groups == "all":
            opt = torch.optim.AdamW(params, lr=1e-3, weight_decay=0.1)
        else:  # nanoGPT: only tensors of 2 or more dimensions decay
            opt = torch.optim.AdamW([{"params": [p for p in params if p.dim() >= 2], "weight_decay": 0.1},
                                     {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0}], lr=1e-3)
        loader = DataLoader(Samples(batches * batch_size, decode_seconds), batch_size=batch_size, shuffle=True)
        for xb, yb in loader:
            opt.zero_grad()
            nn.functional.cross_entropy(model(xb), yb).backward()
            opt.step()
    return mon.report()


# ----- EFF001 the data loader ----------------------------------------------------------------------------
def test_a_step_waiting_on_a_slow_dataset_is_eff001(one_thread):
    report = _loop(decode_seconds=0.01)  # 4 samples x 10 ms of "decoding" against a sub-millisecond step
    (f,) = report.by_code("EFF001")
    assert f.severity.value == "info" and "test_live_efficiency.py:" in f.location
    assert f.evidence["share"] > eff.MOST and f.evidence["wait_ms"] >= eff.MIN_WAIT_MS
    assert f.evidence["dataset"] == "Samples" and f.evidence["num_workers"] == 0
    assert "num_workers" in " ".join(f.suggestions) and not _loud(report)


def test_the_same_samples_in_memory_are_silent(one_thread):
    report = _loop(decode_seconds=0.0)
    assert "EFF001" not in report.codes() | _eff(report)


def test_the_decision_needs_most_of_the_step_and_a_millisecond():
    slow = [(0.040, 0.045)] * 6
    assert eff.loader_bound(slow)["share"] == pytest.approx(0.889, abs=1e-3)
    assert eff.loader_bound([(0.0008, 0.0012)] * 6) is None  # 67% of a 1.2 ms step: too short to win back
    assert eff.loader_bound([(0.004, 0.012)] * 6) is None  # a third of the step
    assert eff.loader_bound(slow[:4]) is None  # too few steps
    assert eff.loader_bound(slow + [(0.0, 0.5)] * 3)["steps"] == 9  # an evaluation now and then: the median holds
    # on a GPU the host may wait while the device still works through its queue: only an idle device counts
    assert eff.loader_bound(slow, gpu_idle=[(2.0, 45.0)] * 6) is None
    assert eff.loader_bound(slow, gpu_idle=[(40.0, 45.0)] * 6)["gpu_idle_share"] > 0.8


# ----- EFF002 weight decay on biases, norms, embeddings ------------------------------------------------------
def test_adamw_decaying_every_parameter_is_eff002():
    report = _loop(groups="all", batches=3)
    (f,) = report.by_code("EFF002")
    assert f.severity.value == "info" and "test_live_efficiency.py:" in f.location  # the line that built it
    assert f.evidence["one_d_tensors"] == 4 and f.evidence["weight_decay"] == 0.1  # 2 biases, LayerNorm's 2
    assert f.evidence["modules"] == ["model.0", "model.1", "model.3"] and not _loud(report)


def test_nanogpt_groups_are_silent():
    assert "EFF002" not in _eff(_loop(groups="split", batches=3))


def test_embeddings_are_named_and_a_split_that_decays_them_is_silent():
    def groups(split: bool):
        torch.manual_seed(0)
        model = nn.Sequential(nn.Embedding(20, 8), nn.LayerNorm(8), nn.Linear(8, 20))
        params = list(model.parameters())
        with nndoctor.Monitor() as mon:
            opt = torch.optim.AdamW([{"params": [p for p in params if p.dim() >= 2]},  # HF: embeddings decayed
                                     {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0}]
                                    if split else params, lr=1e-3)
            for _ in range(2):
                opt.zero_grad()
                nn.functional.cross_entropy(model(torch.arange(8)), torch.arange(8)).backward()
                opt.step()
        return mon.report()

    (f,) = groups(split=False).by_code("EFF002")
    assert f.evidence["embeddings"] == ["model.0.weight"] and f.evidence["weight_decay"] == 0.01  # AdamW's default
    assert "EFF002" not in _eff(groups(split=True))


# ----- EFF003-EFF005 the GPU's matmuls: decisions --------------------------------------------------------------
def _layer(path, kind="linear", i=768, o=768, macs=1.0, dtype="bfloat16", cl=None):
    return Layer(path, kind, i, o, macs * 1e8, dtype, cl)  # macs in units of 1e8: GPU-sized work


def test_a_large_matmul_with_a_dimension_off_by_8_under_bf16_is_eff003():
    blocks = [_layer(f"model.h.{k}.mlp", macs=12.0) for k in range(12)]
    vocab = _layer("model.lm_head", o=50257, macs=65.0)
    (bad, share), = eff.misaligned(blocks + [vocab])
    assert bad.path == "model.lm_head" and share == pytest.approx(65 / 209)
    assert eff.misaligned(blocks + [_layer("model.lm_head", o=50304, macs=65.0)]) == []  # nanoGPT's padding
    fp32 = [_layer(x.path, x.kind, x.in_dim, x.out_dim, x.macs, "float32") for x in blocks + [vocab]]
    assert eff.misaligned(fp32) == []  # no tensor cores to defeat
    assert eff.misaligned(blocks + [_layer("model.classifier", o=10, macs=0.5)]) == []  # 0.3% of the work
    tiny = [_layer("model.0", i=10, o=32, macs=3e-6), _layer("model.2", i=32, o=3, macs=1e-6)]
    assert eff.misaligned(tiny) == []  # a toy MLP: launch-bound, its shapes cannot matter
    stem = _layer("model.conv1", "conv2d", 3, 64, macs=30.0)  # RGB in: cuDNN pads it
    assert eff.misaligned([stem, _layer("model.conv2", "conv2d", 64, 64, macs=70.0)]) == []


def test_a_conv_net_in_nchw_under_bf16_is_eff004():
    convs = [_layer(f"model.conv{k}", "conv2d", 64, 64, macs=10.0, cl=False) for k in range(4)]
    slow, part = eff.channels_first(convs + [_layer("model.fc", macs=1.0)])
    assert [x.path for x in slow] == [f"model.conv{k}" for k in range(4)] and part == pytest.approx(40 / 41)
    nhwc = [_layer(x.path, "conv2d", 64, 64, macs=10.0, cl=True) for x in convs]
    assert eff.channels_first([_layer(x.path, "conv2d", 64, 64, 1e-3, cl=False) for x in convs])[0] == []  # tiny
    assert eff.channels_first(nhwc)[0] == []
    assert eff.channels_first([_layer(x.path, "conv2d", 64, 64, 10.0, "float32", False) for x in convs])[0] == []
    assert eff.channels_first(convs[:1] + [_layer("model.attn", macs=30.0)])[0] == []  # mostly not a conv net


def test_float32_training_on_a_bf16_gpu_is_eff005():
    layers = [_layer("model.0", dtype="float32"), _layer("model.2", dtype="float32")]
    fp32 = Forward("cuda", "train.py:9", "", {"float32": 1000}, True)
    assert eff.float32_training(fp32, layers)
    assert not eff.float32_training(Forward("cuda", "", "bfloat16", {"float32": 1000}, True),
                                    [_layer("model.0"), _layer("model.2")])  # autocast: the fix
    assert not eff.float32_training(Forward("cuda", "", "", {"float32": 1000}, False), layers)  # a V100/T4
    assert not eff.float32_training(Forward("cpu", "", "", {"float32": 1000}, True), layers)
    assert not eff.float32_training(Forward("cuda", "", "", {"bfloat16": 1000}, True),
                                    [_layer("model.0"), _layer("model.2")])  # model.bfloat16()


# ----- the watcher's one-forward reading, exercised on CPU ------------------------------------------------------
class Head(nn.Module):
    def __init__(self, vocab: int, channels_last: bool = False):
        super().__init__()
        self.convs = nn.Sequential(nn.Conv2d(3, 32, 3, padding=1), nn.ReLU(), nn.Conv2d(32, 32, 3, padding=1))
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.lm_head = nn.Linear(32, vocab)
        self.channels_last = channels_last

    def forward(self, x):
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return self.lm_head(self.pool(self.convs(x)).flatten(1))


def _gpu_facts(monkeypatch, vocab: int, channels_last: bool = False, autocast: bool = True):
    monkeypatch.setattr(gpu_usage, "DEVICES", ("cuda", "cpu"))  # read on CPU as it would be on a GPU
    monkeypatch.setattr(eff, "MIN_MACS", 0)  # and judged as if CPU-sized work were GPU-sized
    torch.manual_seed(0)
    model = Head(vocab, channels_last)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    x, y = torch.randn(8, 3, 16, 16), torch.randint(0, vocab, (8,))
    with nndoctor.Monitor(model, opt) as mon:
        for _ in range(3):
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
                out = model(x)
            opt.zero_grad()
            nn.functional.cross_entropy(out.float(), y).backward()
            opt.step()
    watcher = next(w for w in mon.watchers if w.name == "gpu-usage")
    return mon.report(), watcher


def test_the_watcher_reads_dims_dtype_and_layout_of_one_forward(monkeypatch):
    report, w = _gpu_facts(monkeypatch, vocab=50257)
    assert [(x.path, x.kind, x.in_dim, x.out_dim, x.dtype) for x in w.layers] == [
        ("model.convs.0", "conv2d", 3, 32, "bfloat16"), ("model.convs.2", "conv2d", 32, 32, "bfloat16"),
        ("model.lm_head", "linear", 32, 50257, "bfloat16")]
    assert w.forward.autocast == "bfloat16" and "test_live_efficiency.py:" in w.forward.site
    assert [x.channels_last for x in w.layers] == [False, False, None]
    (dims,) = report.by_code("EFF003")
    assert dims.location == "model.lm_head" and dims.evidence["layers"][0]["out"] == 50257
    assert report.by_code("EFF004")[0].location == "model.convs.0" and not _loud(report)
    assert not gpu_usage.module_hooks._global_forward_pre_hooks or all(  # its hook lived for one forward only
        getattr(h, "__self__", None) is not w for h in gpu_usage.module_hooks._global_forward_pre_hooks.values())


def test_the_padded_channels_last_twin_is_silent(monkeypatch):
    report, w = _gpu_facts(monkeypatch, vocab=50264, channels_last=True)
    assert [x.channels_last for x in w.layers][:2] == [True, True]
    assert _eff(report) == set()


def test_no_reading_off_the_gpu_by_default():
    torch.manual_seed(0)
    model = Head(11)
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    with nndoctor.Monitor(model, opt) as mon:
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out = model(torch.randn(4, 3, 8, 8))
        nn.functional.cross_entropy(out.float(), torch.arange(4)).backward()
        opt.step()
    w = next(w for w in mon.watchers if w.name == "gpu-usage")
    assert w.forward is None and w.layers == [] and _eff(mon.report()) == set()


# ----- through the CLI, on an unmodified script ------------------------------------------------------------------
def test_run_reports_both_patterns_on_the_script_and_nothing_on_its_fixed_twin(tmp_path):
    planted, fixed = tmp_path / "planted.json", tmp_path / "fixed.json"
    out = nndoctor_cli("run", "--json", str(planted), SCRIPT, "--data", "slow", "--decay", "all")
    assert out.returncode == 0 and "done 16 steps" in out.stdout, out.stdout[-2000:] + out.stderr[-2000:]
    found = {f["code"]: f for f in json.loads(planted.read_text())["findings"]}
    assert "efficiency.py:" in found["EFF001"]["location"]  # the line iterating the loader
    assert found["EFF001"]["severity"] == "info" and found["EFF001"]["evidence"]["share"] > eff.MOST
    assert found["EFF002"]["severity"] == "info" and found["EFF002"]["evidence"]["embeddings"] == ["model.emb.weight"]
    assert "efficiency.py:" in found["EFF002"]["location"]
    assert not [f for f in found.values() if f["severity"] != "info"]
    out = nndoctor_cli("run", "--json", str(fixed), SCRIPT, "--data", "fast", "--decay", "split")
    assert out.returncode == 0 and "done 16 steps" in out.stdout, out.stdout[-2000:] + out.stderr[-2000:]
    assert [f["code"] for f in json.loads(fixed.read_text())["findings"] if f["code"].startswith("EFF")] == []


# ----- the Lightning callback: Lightning's own loop, optimizer and DataLoader ------------------------------------
def _lightning(decode_seconds: float, groups: str):
    pl = pytest.importorskip("lightning.pytorch")
    from nndoctor.integrations.lightning import NNDoctorCallback

    class Module(pl.LightningModule):
        def __init__(self):
            super().__init__()
            self.net = nn.Sequential(nn.Linear(10, 32), nn.LayerNorm(32), nn.ReLU(), nn.Linear(32, 3))

        def training_step(self, batch, _):
            x, y = batch
            return nn.functional.cross_entropy(self.net(x), y)

        def configure_optimizers(self):
            params = list(self.parameters())
            if groups == "all":
                return torch.optim.AdamW(params, lr=1e-3, weight_decay=0.1)
            return torch.optim.AdamW([{"params": [p for p in params if p.dim() >= 2], "weight_decay": 0.1},
                                      {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0}], lr=1e-3)

    torch.manual_seed(0)
    callback = NNDoctorCallback()
    trainer = pl.Trainer(max_epochs=1, callbacks=[callback], logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False, accelerator="cpu", devices=1)
    trainer.fit(Module(), DataLoader(Samples(48, decode_seconds), batch_size=4))
    return callback.report()


def test_lightning_slow_data_and_decay_on_norms_are_info(one_thread):
    report = _lightning(decode_seconds=0.01, groups="all")
    assert report.by_code("EFF001")[0].evidence["dataset"] == "Samples"
    assert report.by_code("EFF002")[0].evidence["modules"] == ["model.0", "model.1", "model.3"]  # the root: self.net
    assert not _loud(report)


def test_lightning_fixed_twin_is_silent(one_thread):
    assert _eff(_lightning(decode_seconds=0.0, groups="split")) == set()


# ----- the Hugging Face callback: the Trainer's own groups are silent, an optimizer over everything is not ---------
def _hf(own_optimizer: bool):
    transformers = pytest.importorskip("transformers")
    import tempfile

    from nndoctor.integrations.huggingface import NNDoctorCallback
    from scripts.tiny_bert import build

    model, dataset = build()
    callback = NNDoctorCallback()
    optimizers = (torch.optim.AdamW(model.parameters(), lr=5e-4, weight_decay=0.01), None) if own_optimizer \
        else (None, None)
    with tempfile.TemporaryDirectory() as out:
        args = transformers.TrainingArguments(output_dir=out, max_steps=4, per_device_train_batch_size=16,
                                              learning_rate=5e-4, weight_decay=0.01, report_to=[],
                                              save_strategy="no", logging_strategy="no", use_cpu=True,
                                              disable_tqdm=True)
        transformers.Trainer(model=model, args=args, train_dataset=dataset, callbacks=[callback],
                             optimizers=optimizers).train()
    return callback.report()


def test_huggingface_adamw_over_every_parameter_is_eff002_and_the_trainers_groups_are_silent():
    f = _hf(own_optimizer=True).by_code("EFF002")[0]
    assert f.evidence["one_d_tensors"] > 0 and any("LayerNorm" in m or "norm" in m.lower() for m in f.evidence["modules"])
    assert "EFF002" not in _eff(_hf(own_optimizer=False))


# ----- the Keras callback: Keras iterating a torch DataLoader; its steps end at the loss it reports -----------
def _keras(decode_seconds: float):
    os.environ.setdefault("KERAS_BACKEND", "torch")
    keras = pytest.importorskip("keras")
    if keras.backend.backend() != "torch":
        pytest.skip("keras is not on the torch backend in this process")
    from nndoctor.integrations.keras import NNDoctorCallback

    class Numpy(Samples):
        def __getitem__(self, i):
            x, y = super().__getitem__(i)
            return x.numpy(), y.numpy()

    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((10,)), keras.layers.Dense(32, activation="relu"), keras.layers.Dense(3)])
    model.compile(optimizer=keras.optimizers.Adam(1e-3),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    callback = NNDoctorCallback()
    model.fit(DataLoader(Numpy(48, decode_seconds), batch_size=4), epochs=1, callbacks=[callback], verbose=0)
    return callback.report()


def test_keras_fit_on_a_slow_dataloader_is_eff001_and_in_memory_is_silent(one_thread):
    report = _keras(decode_seconds=0.02)
    assert report.by_code("EFF001")[0].evidence["dataset"] == "Numpy" and not _loud(report)
    assert _eff(_keras(decode_seconds=0.0)) == set()
