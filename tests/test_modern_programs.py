"""Real modern training programs, correct ones: nndoctor must say nothing worse than info about them.

- a nanoGPT-style character LM (tests/scripts/nanogpt_style.py: AdamW with decay / no-decay groups, warm-up +
  cosine set by hand, gradient accumulation, bf16 autocast with a disabled GradScaler, clipping after unscale_)
  through the real CLI, eager (and compiled, in the slow set);
- a Hugging Face ``Trainer`` on a tiny GPT-2 built from a config: padded batches with attention masks, bf16,
  gradient accumulation, warm-up + cosine, clipping;
- a Lightning module trained with ``precision="bf16-mixed"``, a warm-up scheduler stepped per batch.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch

SCRIPTS = os.path.join(os.path.dirname(__file__), "scripts")


def _loud(findings) -> list:
    return [f for f in findings if f["severity"] in ("error", "warning")]


def _run_cli(tmp_path, script: str, *flags: str) -> tuple[subprocess.CompletedProcess, dict]:
    path = tmp_path / "report.json"
    env = {**os.environ, "NO_COLOR": "1", "OMP_NUM_THREADS": "1"}  # one thread: a busy machine stays fast
    out = subprocess.run([sys.executable, "-m", "nndoctor", "run", "--json", str(path), script, *flags],
                         check=False, capture_output=True, text=True, timeout=300, env=env)
    assert path.exists(), out.stdout[-3000:] + out.stderr[-3000:]
    return out, json.loads(path.read_text())


def test_nanogpt_style_program_is_silent_through_the_cli(tmp_path):
    out, doc = _run_cli(tmp_path, os.path.join(SCRIPTS, "nanogpt_style.py"))
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    assert "done" in out.stdout and "step 60" in out.stdout  # the script ran to its end, its output untouched
    assert _loud(doc["findings"]) == [], _loud(doc["findings"])


@pytest.mark.slow
def test_compiled_nanogpt_style_program_is_silent_through_the_cli(tmp_path):
    out, doc = _run_cli(tmp_path, os.path.join(SCRIPTS, "nanogpt_style.py"), "--compile")
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    assert _loud(doc["findings"]) == [], _loud(doc["findings"])


def _report_findings(report) -> list[dict]:
    return [f.to_dict() for f in report.findings]


def test_huggingface_trainer_tiny_gpt2_bf16_accumulation_cosine_is_silent(tmp_path):
    transformers = pytest.importorskip("transformers")
    from nndoctor.integrations.huggingface import NNDoctorCallback

    torch.manual_seed(0)
    config = transformers.GPT2Config(vocab_size=64, n_positions=32, n_embd=32, n_layer=2, n_head=2)
    model = transformers.GPT2LMHeadModel(config)
    g = torch.Generator().manual_seed(0)

    class Padded(torch.utils.data.Dataset):  # sequences of varying length, padded by the collator
        def __init__(self):
            self.rows = []
            for i in range(96):
                n = 8 + i % 17
                start = int(torch.randint(1, 40, (1,), generator=g))
                self.rows.append([(start + k) % 63 + 1 for k in range(n)])  # a learnable counting sequence

        def __len__(self):
            return len(self.rows)

        def __getitem__(self, i):
            return {"input_ids": self.rows[i]}

    def collate(rows):
        n = max(len(r["input_ids"]) for r in rows)
        ids = torch.zeros(len(rows), n, dtype=torch.long)
        mask = torch.zeros(len(rows), n, dtype=torch.long)
        for i, r in enumerate(rows):
            ids[i, :len(r["input_ids"])] = torch.tensor(r["input_ids"])
            mask[i, :len(r["input_ids"])] = 1
        labels = ids.masked_fill(mask == 0, -100)  # padding is ignored by the loss
        return {"input_ids": ids, "attention_mask": mask, "labels": labels}

    callback = NNDoctorCallback()
    args = transformers.TrainingArguments(
        output_dir=str(tmp_path), num_train_epochs=3, per_device_train_batch_size=8, gradient_accumulation_steps=2,
        learning_rate=3e-3, lr_scheduler_type="cosine", warmup_steps=3, weight_decay=0.01, max_grad_norm=1.0,
        bf16=True, use_cpu=True, report_to=[], save_strategy="no", logging_strategy="no", disable_tqdm=True)
    transformers.Trainer(model=model, args=args, train_dataset=Padded(), data_collator=collate,
                         callbacks=[callback]).train()
    report = callback.report()
    assert report.meta["steps"] > 0
    assert _loud(_report_findings(report)) == [], _loud(_report_findings(report))


def test_lightning_bf16_mixed_module_is_silent():
    pl = pytest.importorskip("lightning.pytorch")
    from sklearn.datasets import load_digits
    from torch import nn
    from torch.utils.data import DataLoader, TensorDataset

    from nndoctor.integrations.lightning import NNDoctorCallback

    d = load_digits()
    x, y = torch.tensor(d.data, dtype=torch.float32) / 16.0, torch.tensor(d.target)

    class Classifier(pl.LightningModule):
        def __init__(self):
            super().__init__()
            self.net = nn.Sequential(nn.Linear(64, 64), nn.LayerNorm(64), nn.GELU(), nn.Dropout(0.1), nn.Linear(64, 10))

        def training_step(self, batch, _):
            xb, yb = batch
            return nn.functional.cross_entropy(self.net(xb), yb)

        def configure_optimizers(self):
            opt = torch.optim.AdamW(self.parameters(), lr=3e-3, weight_decay=0.01)
            warm = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / 10))
            return {"optimizer": opt, "lr_scheduler": {"scheduler": warm, "interval": "step"}}

    pl.seed_everything(0, verbose=False)
    callback = NNDoctorCallback()
    trainer = pl.Trainer(max_epochs=3, precision="bf16-mixed", accelerator="cpu", devices=1, logger=False,
                         enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                         gradient_clip_val=1.0, callbacks=[callback])
    trainer.fit(Classifier(), DataLoader(TensorDataset(x[:1400], y[:1400]), batch_size=32, shuffle=True))
    report = callback.report()
    assert report.meta["steps"] > 0
    assert _loud(_report_findings(report)) == [], _loud(_report_findings(report))
