"""The one trainer of copies against a plain training loop, and its promises: variants applied to the copy
and its optimizer, its own RNG stream (the global one left as it was), early stop, budgets, crashes,
callbacks; and the trained copy of step 4 shared through the Context."""
from __future__ import annotations

import time

import pytest
import torch
from torch import nn

import nndoctor
from nndoctor.budget import Budget
from nndoctor.checks.trained_copy import trained_copy
from nndoctor.context import Context
from nndoctor.trainer import (Epochs, FixedBatch, Trainer, Variant, has_dropout, lr_variant, reinitialised,
                              without_dropout)

from cases.data_sources import digits

FAR = 1e9  # a deadline that never comes: these tests count steps, never seconds


def _context(dropout: float = 0.0, lr: float = 0.05, **setup) -> Context:
    torch.manual_seed(0)
    train, _ = digits()
    model = nn.Sequential(nn.Linear(64, 32), nn.ReLU(), nn.Dropout(dropout), nn.Linear(32, 10))
    return Context(nndoctor.Setup(model=model, train_data=train, loss_fn=nn.CrossEntropyLoss(),
                                  optimizer=lambda p: torch.optim.SGD(p, lr=lr, momentum=0.9), **setup))


def test_epochs_match_a_plain_loop_over_reshuffled_batches():
    """Same permutations, same steps, same losses as the obvious hand-written loop."""
    ctx = _context(dropout=0.5)
    x, y = digits()[0]
    run = Trainer(ctx, Epochs(x, y, 100, ctx.device, seed=3), seed=7)
    run.advance(40, FAR)

    model = ctx.fresh_model().train()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    g = torch.Generator().manual_seed(3)
    losses = []
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(7)
        while len(losses) < 40:
            order = torch.randperm(len(y), generator=g)
            for first in range(0, (len(y) // 100) * 100, 100):
                if len(losses) == 40:
                    break
                rows = order[first:first + 100]
                optimizer.zero_grad(set_to_none=True)
                loss = nn.functional.cross_entropy(model(x[rows]), y[rows])
                loss.backward()
                optimizer.step()
                losses.append(float(loss.detach()))
    assert run.loss == pytest.approx(losses, rel=1e-6)
    assert run.steps == 40 and run.epochs == pytest.approx(40 / (len(y) // 100))
    assert all(torch.equal(a, b) for a, b in zip(run.model.state_dict().values(), model.state_dict().values()))


def test_global_rng_is_left_as_it_was_and_bouts_continue_one_stream():
    ctx = _context(dropout=0.5)
    batch = ctx.first_batch()
    torch.manual_seed(123)
    before = torch.get_rng_state()
    split = Trainer(ctx, FixedBatch(batch), seed=1)
    for _ in range(4):
        split.advance(split.steps + 5, FAR)
    assert torch.equal(torch.get_rng_state(), before)
    whole = Trainer(ctx, FixedBatch(batch), seed=1)
    whole.advance(20, FAR)
    assert split.loss == whole.loss


def test_variants_are_applied_to_the_copy_and_its_optimizer_never_to_the_user_objects():
    ctx = _context(dropout=0.5)
    user_model = ctx.setup.model
    state = {k: v.clone() for k, v in user_model.state_dict().items()}
    run = Trainer(ctx, FixedBatch(ctx.first_batch()), lr_variant(0.05, -1))
    assert run.lr == pytest.approx(0.005)
    no_momentum = Trainer(ctx, FixedBatch(ctx.first_batch()), Variant(label="no momentum", hyper={"momentum": 0.0}))
    assert no_momentum.optimizer.param_groups[0]["momentum"] == 0.0
    no_dropout = Trainer(ctx, FixedBatch(ctx.first_batch()),
                         Variant(label="no dropout", edit=lambda m: setattr(m[2], "p", 0.0)))
    assert no_dropout.model[2].p == 0.0 and user_model[2].p == 0.5
    evaluated = Trainer(ctx, FixedBatch(ctx.first_batch()), Variant(label="eval", train_mode=False))
    for r in (run, no_momentum, no_dropout, evaluated):
        r.advance(5, FAR)
    assert not evaluated.model.training and user_model.training
    assert all(torch.equal(v, state[k]) for k, v in user_model.state_dict().items())


def test_early_stop_measure_and_per_step_callbacks():
    ctx = _context()
    seen = []
    run = Trainer(ctx, FixedBatch(ctx.first_batch()),
                  measure=lambda out, batch: {"error": (out.argmax(1) != batch[1]).float().mean()},
                  early_stop=lambda r: "converged" if r.curves["error"][-1] == 0 else None,
                  on_step=lambda r: seen.append(r.steps), primary="error")
    run.advance(500, FAR)
    assert run.status == "converged" and run.curves["error"][-1] == 0 and 0 < run.steps < 500
    assert seen == list(range(1, run.steps + 1)) and len(run.curves["error"]) == run.steps
    run.advance(500, FAR)  # stopped early: nothing more unless asked
    steps = run.steps
    run.advance(steps + 3, FAR, stop_early=False)
    assert run.steps == steps + 3


def test_non_finite_blow_up_crash_and_budget_end_a_run():
    ctx = _context(lr=1e6)
    exploded = Trainer(ctx, FixedBatch(ctx.first_batch()), give_up=10.0)
    exploded.advance(200, FAR)
    assert exploded.status in ("exploded", "non-finite") and exploded.finished and exploded.steps < 200

    def broken(step: int):
        if step == 3:
            raise ValueError("bad sample")
        return ctx.first_batch()

    crashed = Trainer(_context(), broken)
    crashed.advance(10, FAR)
    assert crashed.status == "crashed" and crashed.steps == 3 and "ValueError: bad sample" in crashed.failure
    spent = Trainer(_context(), FixedBatch(ctx.first_batch()))
    spent.advance(10, Budget(0.0))
    spent.advance(10, time.monotonic() - 1.0)
    assert spent.steps == 0 and spent.status == "running"


def test_compare_trains_its_copy_once_and_shares_it():
    ctx = _context()
    first = trained_copy(ctx)
    assert first.training.steps > 0 and not first.model.training
    assert trained_copy(ctx) is first  # later steps read the same copy
    assert first.training.checkpoints[-1][0] == first.training.steps
    given = _context(trained=True)
    assert trained_copy(given).training is None


def test_ready_made_interventions_change_only_the_copy():
    ctx = _context(dropout=0.5)
    batch = FixedBatch(ctx.first_batch())
    state = {k: v.clone() for k, v in ctx.setup.model.state_dict().items()}
    rng = torch.get_rng_state()
    fresh = [Trainer(ctx, batch, reinitialised(seed=s)) for s in (1, 1, 2)]
    assert torch.equal(torch.get_rng_state(), rng)  # the re-initialisation drew from its own stream
    weights = [r.model[0].weight for r in fresh]
    assert torch.equal(weights[0], weights[1]) and not torch.equal(weights[0], weights[2])
    assert not torch.equal(weights[0], state["0.weight"])
    assert not Trainer(ctx, batch, without_dropout()).model[2].p and ctx.setup.model[2].p == 0.5
    assert has_dropout(ctx.setup.model)
    assert all(torch.equal(v, state[k]) for k, v in ctx.setup.model.state_dict().items())
