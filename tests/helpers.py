"""Shared test helpers: running a case, and asserting that the user's state did not change."""
from __future__ import annotations

from functools import lru_cache

import torch

import nndoctor
from nndoctor.sandbox import fingerprint, fingerprint_diff, rng_fingerprint


def run_checked(setup: nndoctor.Setup, **kwargs) -> nndoctor.Report:
    """nndoctor.check, asserting that it changed none of the user's objects nor the RNG states."""
    opt = setup.optimizer if isinstance(setup.optimizer, torch.optim.Optimizer) else None
    before = fingerprint(setup.model, opt)
    rng_before = rng_fingerprint()
    report = nndoctor.check(setup, **kwargs)
    assert fingerprint_diff(before, fingerprint(setup.model, opt)) == []
    assert rng_fingerprint() == rng_before
    assert report.meta["user_state_changed"] == []
    crashed = [c for c in report.checks if c.status == "crashed"]
    assert not crashed, f"nndoctor's own checks crashed: {crashed}"
    validate(report)
    return report


def validate(report: nndoctor.Report) -> None:
    """Validate the report's JSON against the schema that ships in the package."""
    import json
    from importlib import resources

    import jsonschema

    schema_file = resources.files("nndoctor.report").joinpath("schema.json")
    doc = json.loads(report.to_json())
    if schema_file.is_file():
        jsonschema.validate(doc, json.loads(schema_file.read_text()))
    assert {"nndoctor_version", "findings", "checks"} <= set(doc)


@lru_cache(maxsize=None)
def clean_report(name: str) -> nndoctor.Report:
    """The full-playbook report of a clean model, computed once per test session."""
    from cases.clean_models import CLEAN

    return run_checked(CLEAN[name]())


def toy_problem(samples: int = 64, lr: float = 0.05, device: str = "cpu"):
    """(x, y, model, optimizer): a seeded 3-class problem and a small MLP with SGD, for Monitor loops."""
    from torch import nn

    torch.manual_seed(0)
    x, y = torch.randn(samples, 10).to(device), torch.randint(0, 3, (samples,)).to(device)
    model = nn.Sequential(nn.Linear(10, 32), nn.ReLU(), nn.Linear(32, 3)).to(device)
    return x, y, model, torch.optim.SGD(model.parameters(), lr=lr)
