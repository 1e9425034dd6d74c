"""MOD004: ``F.dropout(x, p)`` left at its default training=True still drops activations during evaluation
(model.eval() cannot reach it), located at the call; ``training=self.training``, an explicit
``training=True`` (Monte-Carlo dropout on purpose) and ``nn.Dropout`` are silent."""
from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import nndoctor
from test_cli import nndoctor as nndoctor_cli

VARIANTS = {
    "default": lambda self, h: F.dropout(h, 0.5),  # the bug: on at evaluation too
    "default-p-keyword": lambda self, h: F.dropout2d(h[:, :, None, None], p=0.3).flatten(1),  # also the bug
    "fixed": lambda self, h: F.dropout(h, 0.5, training=self.training),
    "mc-dropout": lambda self, h: F.dropout(h, 0.5, training=True),  # deliberate
    "positional": lambda self, h: F.dropout(h, 0.5, self.training),
    "module": lambda self, h: self.drop(h),
}


class Net(nn.Module):
    def __init__(self, variant: str):
        super().__init__()
        self.a, self.b, self.drop, self.variant = nn.Linear(8, 16), nn.Linear(16, 2), nn.Dropout(0.5), variant

    def forward(self, x):
        return self.b(VARIANTS[self.variant](self, torch.relu(self.a(x))))


def _run(variant: str):
    torch.manual_seed(0)
    x, y = torch.randn(64, 8), torch.randint(0, 2, (64,))
    model = Net(variant)
    with nndoctor.Monitor() as mon:
        opt = torch.optim.Adam(model.parameters(), 1e-2)
        for _ in range(3):
            model.train()
            for i in range(0, 64, 16):
                loss = F.cross_entropy(model(x[i:i + 16]), y[i:i + 16])
                opt.zero_grad()
                loss.backward()
                opt.step()
            model.eval()
            with torch.no_grad():
                model(x)
    return mon.report()


def _line(text: str) -> int:
    return next(i for i, line in enumerate(open(__file__).read().splitlines()) if text in line) + 1


@pytest.mark.parametrize("variant,text", [("default", '"default": lambda'), ("default-p-keyword", "F.dropout2d(")])
def test_functional_dropout_at_its_default_during_evaluation_is_mod004(variant, text):
    report = _run(variant)
    (f,) = [f for f in report.findings if f.code == "MOD004"]
    assert f.location.endswith(f"test_live_functional_modes.py:{_line(text)}")
    assert f.evidence["cause"] == "train-eval-mode" and f.evidence["eval_calls"] == 3
    assert f.severity.value == "warning"


@pytest.mark.parametrize("variant", ["fixed", "mc-dropout", "positional", "module"])
def test_dropout_that_follows_the_mode_or_says_so_is_silent(variant):
    report = _run(variant)
    assert "MOD004" not in report.codes()
    assert [f.code for f in report.findings if f.severity.value in ("error", "warning")] == []


def test_the_patch_is_removed_and_computes_the_same():
    original = F.dropout
    torch.manual_seed(1)
    expected = F.dropout(torch.ones(100), 0.5)
    with nndoctor.Monitor():
        assert F.dropout is not original
        torch.manual_seed(1)
        assert torch.equal(F.dropout(torch.ones(100), 0.5), expected)
    assert F.dropout is original


SCRIPT = """import sys, torch, torch.nn.functional as F
from torch import nn
FIX = len(sys.argv) > 1
class Net(nn.Module):
    def __init__(self):
        super().__init__(); self.a = nn.Linear(20, 32); self.b = nn.Linear(32, 2)
    def forward(self, x):
        h = F.relu(self.a(x))
        h = F.dropout(h, 0.5, training=self.training) if FIX else F.dropout(h, 0.5)
        return self.b(h)
torch.manual_seed(0)
X = torch.randn(256, 20); y = (X[:, 0] > 0).long()
model = Net(); opt = torch.optim.Adam(model.parameters(), 1e-2)
for epoch in range(3):
    model.train()
    for i in range(0, 256, 32):
        loss = F.cross_entropy(model(X[i:i+32]), y[i:i+32]); opt.zero_grad(); loss.backward(); opt.step()
    model.eval()
    with torch.no_grad():
        acc = (model(X).argmax(1) == y).float().mean()
"""


def test_cli_planted_functional_dropout_and_its_fix(tmp_path):
    script = tmp_path / "fdrop.py"
    script.write_text(SCRIPT)
    docs = []
    for args in ((), ("fixed",)):
        path = tmp_path / "r.json"
        out = nndoctor_cli("run", "--json", str(path), str(script), *args)
        assert path.exists(), (out.stdout[-2000:], out.stderr[-2000:])
        docs.append(json.loads(path.read_text()))
    (f,) = [f for f in docs[0]["findings"] if f["code"] == "MOD004"]
    assert f["location"].endswith("fdrop.py:9") and f["evidence"]["cause"] == "train-eval-mode"
    assert [f["code"] for f in docs[1]["findings"] if f["severity"] in ("error", "warning")] == []
