"""Step 4 pieces: metrics against scikit-learn, baselines on token ids, the comparison table, and how
known results are weighed by their source (CMP003)."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.metrics import accuracy_score, balanced_accuracy_score, mean_squared_error, r2_score
from torch import nn

from cases.cmp_cases import _trained_digits_mlp
from cases.data_sources import token_sequences
from helpers import run_checked
from nndoctor import KnownResult, Setup
from nndoctor.probes import scoring
from nndoctor.probes.baselines import fit_baselines


@pytest.fixture(scope="module")
def rng():
    return np.random.default_rng(0)


def test_metrics_match_scikit_learn(rng):
    y = rng.integers(0, 4, 300)
    pred = np.where(rng.random(300) < 0.6, y, rng.integers(0, 4, 300))
    assert scoring.score("accuracy", pred, y) == pytest.approx(accuracy_score(y, pred))
    assert scoring.score("balanced_accuracy", pred, y) == pytest.approx(balanced_accuracy_score(y, pred))
    target = rng.normal(size=(300, 2))
    guess = target + rng.normal(scale=0.5, size=(300, 2))
    assert scoring.score("r2", guess, target) == pytest.approx(r2_score(target, guess))
    assert scoring.score("mse", guess, target) == pytest.approx(mean_squared_error(target, guess))


def test_standard_error_of_accuracy_is_binomial(rng):
    y = rng.integers(0, 2, 400)
    pred = np.where(rng.random(400) < 0.8, y, 1 - y)
    p = scoring.score("accuracy", pred, y)
    assert scoring.standard_error("accuracy", pred, y) == pytest.approx(np.sqrt(p * (1 - p) / 399), rel=1e-6)
    assert scoring.standard_error("accuracy", pred, y, other=pred) == 0.0


def test_imbalanced_classes_are_scored_with_balanced_accuracy():
    assert scoring.primary_metric("classification", np.array([0] * 90 + [1] * 10)) == "balanced_accuracy"
    assert scoring.primary_metric("classification", np.array([0] * 60 + [1] * 40)) == "accuracy"
    assert scoring.primary_metric("regression", np.zeros((5, 1))) == "r2"


@pytest.mark.parametrize("name, canon", [("Top-1 Accuracy", "accuracy"), ("val_mse", "mse"), ("R^2", "r2"),
                                         ("error rate", "error_rate"), ("BLEU", None)])
def test_known_result_metric_names(name, canon):
    assert scoring.canonical_metric(name) == canon


def test_token_ids_get_a_bag_of_tokens_and_no_neighbours():
    (xt, yt), (xv, yv) = token_sequences()
    baselines, description = fit_baselines("classification", xt, yt.numpy(), xv)
    assert "bag of tokens" in description
    by_role = {b.kind: b for b in baselines}
    assert "token ids" in by_role["neighbours"].skipped
    assert scoring.score("accuracy", by_role["linear"].predictions, yv.numpy()) > 0.9  # counts decide this task


def _report(setup: Setup, codes=("RUN", "CMP001", "CMP003")):
    return run_checked(setup, select=list(codes), budget=60)


def test_without_validation_data_a_held_out_part_is_used_and_said():
    setup = _trained_digits_mlp(lr=1e-3)
    setup.val_data = None
    report = _report(setup, ("RUN", "CMP001"))
    table = report.meta["extras"]["compare"]
    assert "held-out" in table["split"] and "no val_data" in table["split"]
    assert "optimistic" in table["model"]  # the model as given has seen those samples
    assert {row["kind"] for row in table["rows"]} >= {"model", "baseline", "chance"}
    assert report.codes() == set()


def test_no_known_results_says_what_to_look_for_first():
    setup = _trained_digits_mlp(lr=1e-3)
    setup.known_results = []
    (finding,) = _report(setup).by_code("CMP003")
    assert finding.severity.value == "info"
    assert finding.message.index("official-similar") < finding.message.index("similar-model")


def _with_known(*known: KnownResult, lr: float = 1e-5, metric=None) -> Setup:
    setup = _trained_digits_mlp(lr=lr)
    setup.known_results = list(known)
    setup.metric = metric
    return setup


def test_far_below_a_loose_source_is_only_a_warning():
    report = _report(_with_known(KnownResult("accuracy", 97, "similar-model")))  # a percentage
    (finding,) = report.by_code("CMP003")
    assert finding.severity.value == "warning"
    assert "percentage" in " ".join(finding.evidence["remarks"])


def test_known_results_are_judged_most_trusted_first():
    report = _report(_with_known(KnownResult("accuracy", 0.95, "paper"), KnownResult("error", 0.03, "official-similar")))
    first, second = report.by_code("CMP003")
    assert first.evidence["source"] == "official-similar" and first.severity.value == "error"
    assert second.evidence["source"] == "paper" and second.severity.value == "warning"


def test_a_metric_nndoctor_does_not_compute_uses_setup_metric_or_says_why_not():
    known = KnownResult("f1", 0.9, "official-similar")
    (unknown,) = _report(_with_known(known)).by_code("CMP003")
    assert unknown.severity.value == "info" and "Setup(metric=...)" in " ".join(unknown.suggestions)

    def accuracy(outputs: torch.Tensor, targets: torch.Tensor) -> float:
        return (outputs.argmax(1) == targets).float().mean().item()

    (judged,) = _report(_with_known(known, metric=accuracy)).by_code("CMP003")
    assert judged.severity.value == "error" and "Setup.metric" in " ".join(judged.evidence["remarks"])


def test_a_briefly_trained_copy_is_never_an_error_against_a_known_result():
    setup = _with_known(KnownResult("accuracy", 0.999, "official-similar"))
    setup.trained = False
    setup.model = nn.Sequential(nn.Linear(64, 8), nn.ReLU(), nn.Linear(8, 10))
    report = _report(setup, ("RUN", "CMP003"))
    assert all(f.severity.value != "error" for f in report.by_code("CMP003"))
