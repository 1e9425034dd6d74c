"""torch.compile seen through by the live side, and what reaches the loss in a live run (LOS001): planted
bugs and their clean twins, differing only by the fix."""
from __future__ import annotations

import json
import os
import warnings

import pytest
import torch
from torch import nn

import nndoctor
from nndoctor.probes.wrappers import named_modules, named_parameters
from test_cli import nndoctor as cli

SCRIPT = os.path.join(os.path.dirname(__file__), "scripts", "compiled_softmax.py")


def _classifier(last: nn.Module | None, outputs: int = 4) -> nn.Sequential:
    torch.manual_seed(0)
    layers = [nn.Linear(20, 32), nn.ReLU(), nn.Linear(32, outputs)]
    return nn.Sequential(*layers, *([last] if last is not None else []))


def _train(model: nn.Module, loss_fn, *, binary: bool = False, steps: int = 12) -> nndoctor.Report:
    torch.manual_seed(1)
    x = torch.randn(256, 20)
    y = (x[:, :1] > 0).float() if binary else torch.randint(0, 4, (256,))
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    with warnings.catch_warnings(), nndoctor.Monitor() as mon:
        warnings.simplefilter("ignore")  # torch's note on global hooks with torch.compile
        for i in range(steps):
            b = slice((i * 32) % 256, (i * 32) % 256 + 32)
            opt.zero_grad()
            loss_fn(model(x[b]), y[b]).backward()
            opt.step()
    return mon.report()


def _loud(report: nndoctor.Report) -> list[str]:
    return [f.code for f in report.findings if f.severity.value in ("error", "warning")]


def test_names_of_a_compiled_model_drop_orig_mod():
    model = _classifier(nn.Softmax(dim=1))
    compiled = torch.compile(model, backend="eager")
    assert [n for n, _ in named_modules(compiled)] == [n for n, _ in named_modules(model)]
    assert [n for n, _ in named_parameters(compiled)] == ["0.weight", "0.bias", "2.weight", "2.bias"]
    wrapped = nn.DataParallel(compiled)  # wrappers nest: DDP around a compiled model
    assert [n for n, _ in named_modules(wrapped)] == [n for n, _ in named_modules(model)]


@pytest.mark.parametrize("compiled", [False, True], ids=["eager", "compiled"])
def test_softmax_into_cross_entropy_is_los001_live(compiled):
    model = _classifier(nn.Softmax(dim=1))
    run = torch.compile(model, backend="eager") if compiled else model
    (finding,) = _train(run, nn.CrossEntropyLoss()).by_code("LOS001")
    assert finding.location == "model.3" and finding.evidence["cause"] == "activation"
    assert finding.evidence["classes"] == 4


def test_compiled_classifier_with_logits_is_silent():
    report = _train(torch.compile(_classifier(None), backend="eager"), nn.CrossEntropyLoss())
    assert _loud(report) == [] and "LOS001" not in report.codes()


def test_functional_softmax_in_forward_is_located_at_the_loss_line():
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.body = _classifier(None)

        def forward(self, x):
            return torch.softmax(self.body(x), dim=1)

    (finding,) = _train(Net(), lambda out, y: nn.functional.cross_entropy(out, y)).by_code("LOS001")
    assert "test_live_compile.py:" in finding.location and finding.evidence["grad_fn"] == "SoftmaxBackward0"


@pytest.mark.parametrize("sigmoid", [True, False], ids=["planted", "fixed"])
def test_sigmoid_into_bce_with_logits(sigmoid):
    report = _train(_classifier(nn.Sigmoid() if sigmoid else None, outputs=1), nn.BCEWithLogitsLoss(), binary=True)
    if sigmoid:
        (finding,) = report.by_code("LOS001")
        assert finding.location == "model.3" and finding.evidence["cause"] == "activation"
    else:
        assert _loud(report) == [] and "LOS001" not in report.codes()


def test_probabilities_evaluated_without_gradients_are_not_judged():
    """A softmax at evaluation (no_grad) feeding a cross-entropy metric is not the training loss."""
    model = _classifier(None)
    x, y = torch.randn(64, 20), torch.randint(0, 4, (64,))
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    with nndoctor.Monitor() as mon:
        for _ in range(5):
            opt.zero_grad()
            nn.functional.cross_entropy(model(x), y).backward()
            opt.step()
            with torch.no_grad():
                nn.functional.cross_entropy(torch.softmax(model(x), 1), y)
    assert "LOS001" not in mon.report().codes()


@pytest.mark.parametrize("backend", ["eager", pytest.param("inductor", marks=pytest.mark.slow)])
@pytest.mark.parametrize("planted", [True, pytest.param(False, marks=pytest.mark.slow)], ids=["planted", "fixed"])
def test_compiled_softmax_through_the_cli(tmp_path, planted, backend):
    """The real CLI on an unmodified compiled script: the bug is LOS001 at the softmax layer; the fixed twin is
    silent (in the default run its twin is test_compiled_classifier_with_logits_is_silent: a CLI run with a
    compile costs ~25 s on a busy 2-core machine). backend="eager": no C++ build; the real inductor build
    (~32 s for the planted run on a loaded 2-core machine) is marked slow."""
    path = tmp_path / "r.json"
    cli("run", "--json", str(path), SCRIPT, *(["--softmax"] if planted else []), *(["--inductor"] if backend == "inductor" else []))
    findings = json.loads(path.read_text())["findings"]
    if planted:
        found = [f for f in findings if f["code"] == "LOS001"]
        assert [f["location"] for f in found] == ["model.3"] and found[0]["evidence"]["cause"] == "activation"
    else:
        assert [f["code"] for f in findings if f["severity"] in ("error", "warning")] == []


@pytest.mark.parametrize("given", ["original", "compiled"])
def test_a_compiled_model_given_to_the_monitor_trains_and_its_bug_is_found(given):
    """Monitor(model, optimizer) around a compiled model, given as the module or as its compiled wrapper: the
    hub's hook is traced into the graph without breaking it, and the planted LOS001 is found; its clean twin
    is silent."""
    for last, planted in ((nn.Softmax(dim=1), True), (None, False)):
        model = _classifier(last)
        compiled = torch.compile(model, backend="eager")
        torch.manual_seed(1)
        x, y = torch.randn(256, 20), torch.randint(0, 4, (256,))
        opt = torch.optim.Adam(model.parameters(), lr=1e-2)
        with warnings.catch_warnings(), nndoctor.Monitor(model if given == "original" else compiled, opt) as mon:
            warnings.simplefilter("ignore")
            for i in range(12):
                b = slice((i * 32) % 256, (i * 32) % 256 + 32)
                opt.zero_grad()
                nn.functional.cross_entropy(compiled(x[b]), y[b]).backward()
                opt.step()
        report = mon.report()
        assert mon.steps == 12 and ("LOS001" in report.codes()) == planted
        assert not [c for c in _loud(report) if c != "LOS001"]
