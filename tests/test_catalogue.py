"""Meta-tests over the catalogue: frozen codes and names, full documentation, a planted case and a twin per code."""
from __future__ import annotations

import re
import subprocess
import sys

import pytest

from nndoctor import catalogue
from cases import all_cases

# The public contract (INTERFACE.md section 3): codes are never renumbered, names never change.
FROZEN = {
    "RUN001": "shape-mismatch", "RUN002": "dtype-mismatch", "RUN003": "device-mismatch",
    "RUN004": "out-of-memory", "RUN005": "runtime-error",
    "SHP001": "silent-broadcast", "SHP002": "batch-mixing",
    "DAT001": "unnormalized-inputs", "DAT002": "non-finite-data", "DAT003": "invalid-targets",
    "DAT004": "no-signal", "DAT005": "split-mismatch", "DAT006": "unshuffled-batches",
    "DAT007": "split-overlap", "DAT008": "class-imbalance",
    "LOS001": "probabilities-to-logit-loss", "LOS002": "not-log-probabilities",
    "LOS003": "loss-task-mismatch", "LOS004": "bad-initial-loss",
    "GRD001": "no-gradient", "GRD002": "not-updated", "GRD003": "exploding-gradients",
    "GRD004": "vanishing-gradients", "GRD005": "gradient-accumulation",
    "MOD001": "training-in-eval-mode", "MOD002": "evaluating-in-train-mode", "MOD003": "batchnorm-tiny-batch",
    "NUM001": "non-finite-forward", "NUM002": "non-finite-backward", "NUM003": "unstable-formulation",
    "NUM004": "dead-units", "NUM005": "saturated-activations",
    "OFB000": "overfit-ok", "OFB001": "error-goes-up", "OFB002": "error-explodes",
    "OFB003": "error-oscillates", "OFB004": "error-plateaus",
    "CMP001": "below-baseline", "CMP002": "input-independent", "CMP003": "below-known-result",
    "CMP004": "reference-divergence",
    "DDP001": "replica-divergence", "DDP002": "sampler-epoch-not-set", "DDP003": "duplicate-data-across-ranks",
    "DDP004": "unsynced-batchnorm",
}

# Codes whose planted bug can only be seen in a live loop or across processes: their cases live in
# the run/Monitor/integration/DDP tests, which these sets point the meta-test at.
LIVE_ONLY = {"MOD002", "GRD005", "DDP001", "DDP002", "DDP003", "DDP004"}
LIVE_ONLY |= {"GRD006", "GRD007", "GRD008", "GRD009", "NUM006", "NUM007"}  # step order, mixed precision
LIVE_ONLY |= {"OFB005", "OFB006", "MOD004"}  # LR schedules, functional dropout (test_live_schedule, _functional_modes)
LIVE_ONLY |= {"LOS005", "SHP003", "SHP004"}  # padding in the loss, mask polarity, causal leak (test_live_sequences)
LIVE_ONLY |= {"EFF001", "EFF002", "EFF003", "EFF004", "EFF005"}  # wasted compute (test_live_efficiency, test_cuda_efficiency)
# Documented codes whose detection is not built yet: listed here so a gap is visible; remove a code from
# this set in the change that adds its planted-bug test.
NOT_YET_DETECTED: set[str] = set()


def test_frozen_codes_and_names():
    for code, name in FROZEN.items():
        assert code in catalogue.CODES, f"{code} missing from the catalogue"
        assert catalogue.CODES[code].name == name, f"{code} was renamed"


@pytest.mark.parametrize("code", sorted(catalogue.CODES))
def test_every_code_is_documented(code):
    entry = catalogue.CODES[code]
    assert re.fullmatch(r"[A-Z]{3}\d{3}", code)
    assert re.fullmatch(r"[a-z0-9]+(-[a-z0-9]+)*", entry.name)
    for heading in ("summary", "what", "why", "example", "fix", "ignore"):
        assert len(getattr(entry, heading).strip()) > 10, f"{code}.{heading} is empty"
    doc = entry.doc()
    for heading in ("What it means", "Why it matters", "Example", "Fix", "When to ignore"):
        assert heading in doc


def test_every_code_has_a_planted_case_and_a_clean_twin():
    import glob
    import os

    covered = {code for case in all_cases() for code in case.codes}
    twinned = {code for case in all_cases() if case.twin for code in case.codes}
    here = os.path.dirname(__file__)
    live_sources = "".join(open(p).read() for p in glob.glob(os.path.join(here, "**", "test_*.py"), recursive=True))
    missing, untwinned = [], []
    for code in catalogue.CODES:
        if code == "OFB000" or code in NOT_YET_DETECTED:  # OFB000 is info: asserted on every clean model
            continue
        if code in LIVE_ONLY:
            if code not in live_sources:
                missing.append(code)
            continue
        if code not in covered:
            missing.append(code)
        elif code not in twinned:
            untwinned.append(code)
    assert not missing, f"codes without a planted-bug test: {missing}"
    assert not untwinned, f"codes without a clean twin: {untwinned}"


def test_codes_command_prints_the_catalogue_entry():
    out = subprocess.run([sys.executable, "-m", "nndoctor", "codes", "LOS001"], capture_output=True, text=True)
    assert out.returncode == 0
    assert out.stdout.strip() == catalogue.get("LOS001").doc().strip()


def test_resolve_accepts_codes_families_and_names():
    assert catalogue.resolve("LOS001") == {"LOS001"}
    assert catalogue.resolve("los") == {c for c in catalogue.CODES if c.startswith("LOS")}
    assert catalogue.resolve("probabilities-to-logit-loss,RUN001") == {"LOS001", "RUN001"}
    with pytest.raises(KeyError, match="LOS001"):
        catalogue.resolve("LOS01")
