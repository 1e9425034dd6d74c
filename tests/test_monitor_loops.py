"""The Monitor on loops shaped unlike a plain classifier: two models and two optimizers (a GAN), gradient
accumulation. Each planted bug next to its twin, differing only by the fix."""
from __future__ import annotations

import pytest
import torch
from torch import nn

import nndoctor


def _gan(zero_discriminator: bool, minimax: bool = False) -> nndoctor.Report:
    torch.manual_seed(0)
    real = torch.randn(1024, 2) * 0.5 + torch.tensor([2.0, -1.0])
    G = nn.Sequential(nn.Linear(8, 32), nn.ReLU(), nn.Linear(32, 2))
    D = nn.Sequential(nn.Linear(2, 32), nn.LeakyReLU(0.2), nn.Linear(32, 1))
    opt_g = torch.optim.Adam(G.parameters(), lr=1e-3, betas=(0.5, 0.999))
    opt_d = torch.optim.Adam(D.parameters(), lr=1e-3, betas=(0.5, 0.999))
    bce = nn.BCEWithLogitsLoss()
    ones, zeros = torch.ones(64, 1), torch.zeros(64, 1)
    with nndoctor.Monitor() as mon:
        for _ in range(150):
            x, fake = real[torch.randint(0, 1024, (64,))], G(torch.randn(64, 8))
            if zero_discriminator:
                opt_d.zero_grad()
            (bce(D(x), ones) + bce(D(fake.detach()), zeros)).backward()
            opt_d.step()
            opt_g.zero_grad()
            # flows through D: D's .grad fills up, to be zeroed before its step. The minimax form maximises D's
            # loss on the fakes: minus a non-negative loss, on purpose, in a two-player game
            (-bce(D(fake), zeros) if minimax else bce(D(fake), ones)).backward()
            opt_g.step()
    return mon.report()


def test_a_gan_whose_discriminator_is_never_zeroed_is_grd005():
    (finding,) = _gan(zero_discriminator=False).by_code("GRD005")
    assert finding.evidence["stale_steps"] >= 100


@pytest.mark.parametrize("minimax", [False, True], ids=["non-saturating", "minimax"])
def test_a_gan_done_right_is_silent(minimax):
    assert _gan(zero_discriminator=True, minimax=minimax).codes() == set()


@pytest.mark.parametrize("set_to_none", [True, False])
def test_gradient_accumulation_done_right_is_silent(set_to_none):
    torch.manual_seed(0)
    x, y = torch.randn(256, 10), torch.randint(0, 3, (256,))
    model = nn.Sequential(nn.Linear(10, 32), nn.ReLU(), nn.Linear(32, 3))
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    with nndoctor.Monitor(model, opt) as mon:
        for epoch in range(10):
            for i in range(0, 256, 16):  # four micro-batches per optimizer step
                nn.functional.cross_entropy(model(x[i:i + 16]), y[i:i + 16]).div(4).backward()
                if (i // 16) % 4 == 3:
                    opt.step()
                    opt.zero_grad(set_to_none=set_to_none)
    assert mon.report().codes() == set()
