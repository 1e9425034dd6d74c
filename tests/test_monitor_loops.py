"""The Monitor on loops shaped unlike a plain classifier: two models and two optimizers (a GAN), gradient
accumulation. Each planted bug next to its twin, differing only by the fix."""
from __future__ import annotations

import pytest
import torch
from torch import nn

import nndoctor
from helpers import toy_problem


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
    x, y, model, opt = toy_problem(256)
    with nndoctor.Monitor(model, opt) as mon:
        for epoch in range(10):
            for i in range(0, 256, 16):  # four micro-batches per optimizer step
                nn.functional.cross_entropy(model(x[i:i + 16]), y[i:i + 16]).div(4).backward()
                if (i // 16) % 4 == 3:
                    opt.step()
                    opt.zero_grad(set_to_none=set_to_none)
    assert mon.report().codes() == set()


# ----- frozen networks keep their own mode; forwards without gradients inside a training step ---------------
def _net(dropout: float = 0.2) -> nn.Module:
    return nn.Sequential(nn.Linear(10, 32), nn.BatchNorm1d(32), nn.ReLU(), nn.Dropout(dropout), nn.Linear(32, 3))


@pytest.mark.parametrize("frozen,codes", [(True, set()), (False, {"MOD001"})], ids=["frozen-backbone", "trainable"])
def test_a_frozen_backbone_in_eval_mode_is_not_mod001(frozen, codes):
    # a linear probe (MoCo's lincls): the whole model in eval mode, the backbone frozen, only the head trains
    torch.manual_seed(0)
    x, y = torch.randn(256, 10), torch.randint(0, 3, (256,))
    backbone, head = _net()[:4], nn.Linear(32, 3)
    backbone.requires_grad_(not frozen)
    model = nn.Sequential(backbone, head).eval()
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.05)
    with nndoctor.Monitor(model, opt) as mon:
        for i in range(0, 256, 16):
            opt.zero_grad()
            nn.functional.cross_entropy(model(x[i:i + 16]), y[i:i + 16]).backward()
            opt.step()
    assert mon.report().codes() == codes


def test_a_frozen_teacher_called_with_gradients_on_is_not_mod001():
    torch.manual_seed(0)
    x, y = torch.randn(256, 10), torch.randint(0, 3, (256,))
    teacher, student = _net().eval().requires_grad_(False), _net()
    opt = torch.optim.Adam(student.parameters(), lr=1e-3)
    with nndoctor.Monitor() as mon:
        for _ in range(3):
            for i in range(0, 256, 16):
                opt.zero_grad()
                s = student(x[i:i + 16])
                t = teacher(x[i:i + 16])  # after the student, gradients on: it builds no graph
                loss = nn.functional.cross_entropy(s, y[i:i + 16]) + nn.functional.kl_div(
                    s.log_softmax(1), t.softmax(1), reduction="batchmean")
                loss.backward()
                opt.step()
    assert mon.report().codes() == set()


def test_fakes_made_without_gradients_each_step_are_not_an_evaluation():
    torch.manual_seed(0)
    G = nn.Sequential(nn.Linear(8, 32), nn.BatchNorm1d(32), nn.ReLU(), nn.Linear(32, 2))
    D = nn.Sequential(nn.Linear(2, 32), nn.LeakyReLU(0.2), nn.Linear(32, 1))
    opt_g, opt_d = torch.optim.Adam(G.parameters(), lr=1e-3), torch.optim.Adam(D.parameters(), lr=1e-3)
    bce, ones, zeros = nn.BCEWithLogitsLoss(), torch.ones(64, 1), torch.zeros(64, 1)
    with nndoctor.Monitor() as mon:
        for _ in range(100):
            with torch.no_grad():
                fake = G(torch.randn(64, 8))  # train mode, no gradients: part of D's training step
            opt_d.zero_grad()
            (bce(D(torch.randn(64, 2) + 2), ones) + bce(D(fake), zeros)).backward()
            opt_d.step()
            opt_g.zero_grad()
            bce(D(G(torch.randn(64, 8))), ones).backward()
            opt_g.step()
    assert mon.report().codes() == set()


def test_batchnorm_recalibration_with_update_bn_is_not_mod002():
    from torch.optim.swa_utils import AveragedModel, update_bn

    torch.manual_seed(0)
    x, y = torch.randn(256, 10), torch.randint(0, 3, (256,))
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=32)
    model = _net()
    swa, opt = AveragedModel(model), torch.optim.SGD(model.parameters(), lr=0.05)
    with nndoctor.Monitor() as mon:
        for _ in range(4):
            for xb, yb in loader:
                opt.zero_grad()
                nn.functional.cross_entropy(model(xb), yb).backward()
                opt.step()
            swa.update_parameters(model)
        update_bn(loader, swa)  # train mode under no_grad, batch-norm momentum None: on purpose
    assert mon.report().codes() == set()


def test_a_policy_gradient_surrogate_that_rises_towards_zero_is_not_ofb001():
    torch.manual_seed(0)
    policy = nn.Sequential(nn.Linear(4, 32), nn.Tanh(), nn.Linear(32, 4))
    opt = torch.optim.Adam(policy.parameters(), lr=1e-2)
    baseline = 0.0
    with nndoctor.Monitor(policy, opt) as mon:
        for _ in range(300):  # contextual bandit: the reward is 1 for the arm equal to the context's argmax
            ctx = torch.randn(32, 4)
            dist = torch.distributions.Categorical(logits=policy(ctx))
            arm = dist.sample()
            reward = (arm == ctx.argmax(1)).float()
            loss = -(dist.log_prob(arm) * (reward - baseline)).mean()  # negative while it learns
            baseline = 0.9 * baseline + 0.1 * reward.mean().item()
            opt.zero_grad()
            loss.backward()
            opt.step()
    assert mon.report().codes() == set()
