"""The live-curve reader on synthetic minibatch curves: ordinary noise, schedules and a recovered early
spike stay silent; an early blow-up that training never recovers from is OFB002."""
from __future__ import annotations

import math
import random

import pytest

from nndoctor.checks.live_curve import judge


def _curve(n: int, level, noise: float = 0.1, seed: int = 0) -> list[float]:
    rng = random.Random(seed)
    return [level(i) * (1 + noise * rng.uniform(-1, 1)) for i in range(n)]


SILENT = {
    "noisy decay": _curve(200, lambda i: 2.3 * math.exp(-i / 60) + 0.1, noise=0.3),
    "step schedule": _curve(200, lambda i: 2.3 * (0.6 if i > 100 else 1.0) * math.exp(-i / 80) + 0.05),
    "early spike, then learns": _curve(200, lambda i: 30.0 if i in (2, 3) else 2.3 * math.exp(-i / 40) + 0.1),
    "small start, tiny noise": _curve(100, lambda i: 0.01 * math.exp(-i / 50), noise=0.05),
}


@pytest.mark.parametrize("name", SILENT)
def test_ordinary_training_curves_are_silent(name):
    assert [f.code for f in judge(SILENT[name], [1.0] * len(SILENT[name]))] == []


def test_an_early_blow_up_never_recovered_from_is_ofb002():
    losses = _curve(100, lambda i: 120.0 if 1 <= i <= 4 else 2.2, noise=0.1)
    (finding,) = judge(losses, [1.0] * len(losses))
    assert finding.code == "OFB002" and finding.evidence["peak_step"] in (2, 3, 4, 5)


def test_a_plateau_at_the_untrained_loss_after_a_spike_is_ofb004():
    # SGD at lr 3 on digits: one spike to 10.5, then every ReLU dead and the loss stuck at ln(10)
    losses = [2.33, 10.5, 6.0] + _curve(130, lambda i: 2.32, noise=0.02)
    (finding,) = judge(losses, [1.0] * len(losses))
    assert finding.code == "OFB004" and "Lower the learning rate" in finding.suggestions[0]
