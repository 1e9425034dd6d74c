"""The LOS/MOD/NUM probes against slow, obvious references, and the promise that they leave nothing behind."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import BatchSampler, DataLoader, RandomSampler, TensorDataset

from nndoctor.data import DataSource
from nndoctor.probes.activation_stats import ActivationStats
from nndoctor.probes.batch_sizes import batch_sizes
from nndoctor.probes.nonfinite import FirstNonFinite, guarded_steps
from nndoctor.probes.op_trace import OpTrace


def _left_behind(model: nn.Module) -> int:
    hooks = sum(len(m._forward_hooks) + len(m._forward_pre_hooks) + len(m._backward_hooks) for m in model.modules())
    return hooks + len(torch.overrides._get_current_function_mode_stack())


# ----- OpTrace ------------------------------------------------------------------------------------


def test_loss_calls_are_found_inside_modules_functions_and_lambdas():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 3), nn.Softmax(dim=1))
    x, y = torch.randn(8, 4), torch.randint(0, 3, (8,))

    def custom(out: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return 0.5 * F.nll_loss(torch.log(out), t) + nn.MSELoss()(out[:, :1], t[:, None].float())

    with torch.no_grad(), OpTrace(model) as trace:
        out = model(x)
        nn.CrossEntropyLoss(label_smoothing=0.1)(out, y)
        custom(out, y)
    assert [c.name for c in trace.losses] == ["cross_entropy", "nll_loss", "mse_loss"]
    ce, nll, mse = trace.losses
    assert ce.origin.op == "softmax" and ce.origin.site.module == "1" and ce.origin.site.leaf
    assert ce.origin.site.location() == "model.1"
    assert nll.origin is None  # the log made new values
    assert mse.origin.op == "softmax"  # slicing keeps the origin
    assert ce.kwargs["label_smoothing"] == 0.1
    assert torch.allclose(ce.recompute(ce.input), ce.value)  # the same loss, recomputed
    assert math.isclose(float(ce.recompute(torch.zeros_like(out))), math.log(3), rel_tol=1e-6)
    assert [r.kind for r in trace.risks] == ["log-of-probabilities"]
    assert "test_probes_loss_numerics.py:" in trace.risks[0].site.source
    assert _left_behind(model) == 0


def test_origins_follow_views_and_complements_and_hand_written_softmax():
    x = torch.randn(6, 5) * 3
    with torch.no_grad(), OpTrace() as trace:
        p = torch.sigmoid(x[:, 0]).unsqueeze(1).float()
        torch.log(1 - p)
        e = torch.exp(x)
        q = e / e.sum(dim=1, keepdim=True)
        torch.log(e.sum(1))
        torch.log(q.clamp_min(1e-8))  # the epsilon fix: no longer a softmax's raw output
        torch.exp(x * 30)
        x / torch.zeros(1)
    kinds = [r.kind for r in trace.risks]
    assert kinds == ["log-of-probabilities", "hand-written-softmax", "log-of-sum-exp", "large-exp",
                     "near-zero-division"]
    assert trace.risks[0].origin.complement and trace.risks[0].origin.op == "sigmoid"
    assert trace.origin_of(q).hand_written


def test_softmax_over_one_unit_is_measured():
    with torch.no_grad(), OpTrace() as trace:
        p = F.softmax(torch.randn(4, 1), dim=1)
    assert trace.origin_of(p).dim_size == 1


# ----- FirstNonFinite -----------------------------------------------------------------------------


class Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Linear(4, 8)
        self.b = nn.Linear(8, 8)
        self.c = nn.Linear(8, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.relu(self.a(x))
        h = torch.log(self.b(h))  # negative inputs: NaN
        return self.c(h)


def _first_non_finite_module(model: nn.Module, x: torch.Tensor) -> str:
    """The slow reference: run the model by hand, op by op, and check each result."""
    h = torch.relu(model.a(x))
    assert torch.isfinite(h).all()
    z = model.b(h)
    assert torch.isfinite(z).all()
    assert not torch.isfinite(torch.log(z)).all()
    return "log"


def test_forward_birth_matches_running_the_model_by_hand():
    torch.manual_seed(0)
    model = Net()
    x = torch.randn(16, 4)
    with FirstNonFinite(model) as probe:
        loss = F.cross_entropy(model(x), torch.zeros(16, dtype=torch.long))
    birth = probe.birth_of(loss)
    assert birth.op == _first_non_finite_module(model, x)
    assert birth.site.module == "" and "torch.log(self.b(h))" in birth.site.source_line
    assert birth.inputs[0]["negative"] > 0 and birth.produced["nan"] > 0
    assert _left_behind(model) == 0


def test_deliberate_infinities_are_not_births_but_what_they_cause_is():
    scores = torch.randn(3, 4)
    keep = torch.tensor([[True, True, False, False], [True, False, False, False], [False] * 4])
    with FirstNonFinite(nn.Identity()) as probe:
        masked = scores.masked_fill(~keep, float("-inf"))  # a mask, on purpose
        discarded = torch.where(scores > 0, torch.log(scores), torch.zeros_like(scores))  # log(<0) thrown away
        attention = torch.softmax(masked, dim=-1)  # the fully masked row: 0/0
        out = attention.sum() + discarded.sum()
    assert probe.birth_of(out).op == "softmax"


def test_backward_birth_names_the_node_its_forward_op_and_line():
    torch.manual_seed(0)
    model = nn.Linear(3, 4)
    with FirstNonFinite(model) as probe:
        emb = model(torch.randn(5, 3))
        dist = torch.sqrt(((emb[:, None] - emb[None]) ** 2).sum(-1))  # zero on the diagonal
        loss = dist.mean()
    assert probe.births == []
    with probe.watch_backward(loss):
        loss.backward()
    birth = probe.backward_birth
    assert birth.node == "SqrtBackward0" and birth.op == "sqrt"
    assert "dist = torch.sqrt" in birth.site.source_line
    assert birth.inputs[0]["zeros"] == 5 and birth.incoming["nan"] == 0
    assert not torch.isfinite(model.weight.grad).all()  # the reference: autograd itself
    assert _left_behind(model) == 0


def test_guard_reports_the_phase_and_step():
    torch.manual_seed(0)
    model = nn.Linear(2, 1)
    batch = torch.randn(4, 2)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.0)
    healthy = guarded_steps(model, optimizer, lambda m: m(batch).pow(2).mean(), steps=3)
    assert healthy.trip_step is None and len(healthy.losses) == 3
    backward = guarded_steps(model, optimizer, lambda m: (m(batch) - m(batch)).abs().sqrt().mean(), steps=3)
    assert (backward.trip_step, backward.trip_phase) == (0, "backward")
    forward = guarded_steps(model, optimizer, lambda m: m(batch).mean() * math.inf, steps=3)
    assert (forward.trip_step, forward.trip_phase) == (0, "forward")


# ----- ActivationStats ----------------------------------------------------------------------------


def test_activation_stats_match_a_direct_count():
    torch.manual_seed(0)
    conv = nn.Sequential(nn.Conv2d(1, 8, 3), nn.ReLU())
    mlp = nn.Sequential(nn.Linear(5, 16), nn.ReLU(), nn.Linear(16, 16), nn.Tanh())
    with torch.no_grad():
        mlp[0].bias[:6] = -100.0  # six dead units
        mlp[2].weight.mul_(50)
        model = nn.ModuleDict({"conv": conv, "mlp": mlp})
        xs = [torch.randn(10, 5) for _ in range(3)]
        images = torch.randn(4, 1, 6, 6)
        with ActivationStats(model) as stats:
            for x in xs:
                stats.new_pass()
                mlp(x)
                conv(images)
        relu, tanh, conv_relu = stats.results()[:3]
        pre = torch.cat([mlp[0](x) for x in xs])  # (30, 16)
        assert relu.dead_units == int(((pre < 0).all(0)).sum()) >= 6
        post = torch.cat([mlp[:4](x) for x in xs])
        assert tanh.saturated == int((post.abs() > 0.99).sum()) and tanh.values == post.numel()
        assert conv_relu.units == 8  # channels, not width
        assert conv_relu.dead_units == int((conv[0](images) < 0).all(dim=0).all(-1).all(-1).sum())
    assert _left_behind(model) == 0


def test_zero_and_non_finite_inputs_are_not_dead():
    with torch.no_grad(), ActivationStats(nn.Identity()) as stats:
        stats.new_pass()
        x = torch.full((4, 10), -1.0)
        x[:, :3] = 0.0  # sparse: exactly zero
        x[:, 3] = float("nan")
        torch.relu(x)
    assert stats.results()[0].dead_units == 6


# ----- batch sizes --------------------------------------------------------------------------------


@pytest.mark.parametrize("make, expected", [
    (lambda ds: DataLoader(ds, batch_size=32), [1, 32]),
    (lambda ds: DataLoader(ds, batch_size=32, drop_last=True), [32]),
    (lambda ds: DataLoader(ds, batch_sampler=BatchSampler(RandomSampler(ds), 10, drop_last=False)), [3, 10]),
    (lambda ds: ds, [33]),  # a Dataset, batched by Setup(batch_size=64)
    (lambda ds: ds.tensors, [33]),
])
def test_batch_sizes_of_an_epoch(make, expected):
    dataset = TensorDataset(torch.randn(33, 2), torch.randn(33))
    source = DataSource(make(dataset), batch_size=64)
    sizes = batch_sizes(source)
    assert sizes.sizes == expected
    assert sorted({len(b[1]) for b in source.batches()}) == expected  # the reference: iterate it


def test_batch_sizes_of_a_generator_are_unknown():
    assert batch_sizes(DataSource(iter([(torch.zeros(2, 1), torch.zeros(2))]))) is None
