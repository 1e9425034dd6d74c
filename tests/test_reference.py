"""nndoctor.compare_models: layer-by-layer comparison with a reference implementation (CMP004)."""
from __future__ import annotations

import pytest
import torch
from torch import nn

import nndoctor
from cases.cmp_cases import MyBlock, MyNet, OfficialNet
from helpers import validate
from nndoctor.sandbox import fingerprint, fingerprint_diff, rng_fingerprint


def _inputs() -> torch.Tensor:
    return torch.randn(8, 64, generator=torch.Generator().manual_seed(1))


def _errors(report: nndoctor.Report) -> list[nndoctor.Finding]:
    validate(report)
    return [f for f in report.findings if f.code == "CMP004" and f.severity.value == "error"]


def test_faithful_reimplementation_matches_after_loading_weights_by_order():
    torch.manual_seed(0)
    report = nndoctor.compare_models(MyNet(nn.GELU), OfficialNet(), _inputs())
    assert not _errors(report)
    (info,) = report.by_code("CMP004")
    assert info.evidence["matching"] == "by order and output shape"
    assert info.evidence["weights"]["mapped"] == info.evidence["weights"]["tensors"]


def test_wrong_activation_is_located_with_magnitudes():
    torch.manual_seed(0)
    (finding,) = _errors(nndoctor.compare_models(MyNet(nn.ReLU), OfficialNet(), _inputs()))
    assert finding.location == "model.layers.1.nonlin"
    assert "reference.blocks.1.act" in finding.message and "GELU" in finding.message
    row = next(r for r in finding.evidence["layers"] if r["layer"] == "model.layers.1.nonlin")
    assert row["input_max_abs_diff"] == 0 and row["output_max_abs_diff"] > 0.01
    assert 0 < row["output_relative_diff"] < 1


class NoResidualBlock(MyBlock):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down(self.nonlin(self.up(self.ln(x))))  # the residual connection is missing


def test_bug_between_sublayers_blames_the_container():
    torch.manual_seed(0)
    model = MyNet(nn.GELU)
    model.layers[1] = NoResidualBlock(32, nn.GELU)
    (finding,) = _errors(nndoctor.compare_models(model, OfficialNet(), _inputs()))
    assert finding.location == "model.layers.1"
    assert "forward()" in finding.message


def test_same_names_are_matched_by_name():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(64, 16), nn.Tanh(), nn.Linear(16, 3))
    reference = nn.Sequential(nn.Linear(64, 16), nn.ReLU(), nn.Linear(16, 3))
    (finding,) = _errors(nndoctor.compare_models(model, reference, _inputs()))
    assert finding.location == "model.1"
    assert finding.evidence["matching"] == "by name"


def test_a_differently_configured_layer_is_named_with_both_configurations():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(64, 16), nn.ReLU(), nn.Linear(16, 3, bias=False))
    reference = nn.Sequential(nn.Linear(64, 16), nn.ReLU(), nn.Linear(16, 3))
    (finding,) = _errors(nndoctor.compare_models(model, reference, _inputs()))
    assert finding.location == "model.2"
    assert "bias=False" in finding.message and "bias=True" in finding.message


def test_weights_that_do_not_map_are_named():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(64, 16), nn.ReLU(), nn.Linear(16, 4))
    reference = nn.Sequential(nn.Linear(64, 16), nn.ReLU(), nn.Linear(16, 3))
    (finding,) = _errors(nndoctor.compare_models(model, reference, _inputs()))
    assert finding.location == "model.2"
    assert "different shapes" in finding.message and "could not be mapped" in finding.message
    assert finding.evidence["weights"]["unmapped"] == ["2.weight (4, 16)", "2.bias (4,)"]


def test_without_loading_weights_differently_initialised_models_diverge_at_the_first_layer():
    torch.manual_seed(0)
    model, reference = nn.Sequential(nn.Linear(64, 16), nn.ReLU()), nn.Sequential(nn.Linear(64, 16), nn.ReLU())
    (finding,) = _errors(nndoctor.compare_models(model, reference, _inputs(), load_weights=False))
    assert finding.location == "model.0"


def test_user_objects_and_rng_are_untouched():
    torch.manual_seed(0)
    model, reference = MyNet(nn.ReLU).train(), OfficialNet().train()
    before = (fingerprint(model), fingerprint(reference), rng_fingerprint())
    nndoctor.compare_models(model, reference, _inputs())
    assert fingerprint_diff(before[0], fingerprint(model)) == []
    assert fingerprint_diff(before[1], fingerprint(reference)) == []
    assert rng_fingerprint() == before[2]


def test_rejects_what_is_not_a_module():
    with pytest.raises(nndoctor.SetupError, match="reference must be a torch.nn.Module"):
        nndoctor.compare_models(nn.Linear(2, 2), lambda x: x, torch.randn(1, 2))
