"""A copy of the user's model trained for a few epochs on a sample of their data, once per playbook run,
for every step that needs a trained model (the comparison with baselines; later, diagnosis experiments).

The samples are read once (probes/evaluate.py: at most MAX_TRAIN training and MAX_EVAL evaluation
samples); the copy is trained by the one trainer of copies (nndoctor/trainer.py) with the user's
optimizer and batch size, for a planned number of steps within a share of the time budget, and its
outputs on the evaluation samples are kept at a few checkpoints so that a reader can score its learning
curve in its own metric. With ``Setup(trained=True)`` the model is taken as given. Measures only.

The trained copy is shared: read it, or deep-copy it before changing it.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field

import torch
from torch import nn

from nndoctor import data as D
from nndoctor.context import Context
from nndoctor.probes.evaluate import Split, comparison_split, predict
from nndoctor.trainer import Epochs, Trainer

MIN_STEPS, MAX_STEPS, EPOCHS = 200, 500, 8  # training plan of the copy, before the time cap
TRAIN_SHARE, TRAIN_SECONDS = 0.25, 15.0  # the copy trains for at most this share of the budget left, and seconds
CHECKPOINTS = 4  # evenly spaced steps (and the last) at which the copy's evaluation outputs are kept
STEP = "4. Compare to known results"


@dataclass
class Training:
    planned_steps: int
    steps: int = 0
    epochs: float = 0.0
    seconds: float = 0.0
    truncated: bool = False  # the time budget ended training before the planned steps
    diverged_at: int | None = None  # the step whose loss was NaN or Inf
    checkpoints: list[tuple[int, torch.Tensor | None]] = field(default_factory=list)  # (step, eval outputs)


@dataclass
class TrainedCopy:
    split: Split  # the samples it was trained and is evaluated on
    model: nn.Module  # the trained copy (or the copy of the trained model), in eval mode
    training: Training | None  # None: the model was taken as given (trained=True)


def comparison_samples(ctx: Context) -> Split | None:
    """Training and evaluation samples, read once per run; None when batches are not tensor pairs."""
    return ctx.measure("comparison_split", lambda: comparison_split(ctx.train, ctx.val, seed=ctx.seed))


def trained_copy(ctx: Context) -> TrainedCopy | str:
    """The trained copy, trained on first use; a string says why there is none."""
    return ctx.measure("trained_copy", lambda: _train(ctx))


def _train(ctx: Context) -> TrainedCopy | str:
    split = comparison_samples(ctx)
    if split is None:
        return "batches are not (inputs, targets) tensors that can be concatenated"
    model = ctx.fresh_model()
    if ctx.setup.trained:
        return TrainedCopy(split, model.eval(), None)
    batch_size = max(1, D.batch_len(D.split_batch(ctx.first_batch())[0]))
    stream = Epochs(split.train_inputs, split.train_targets, batch_size, ctx.device, seed=ctx.seed)
    planned = int(min(MAX_STEPS, max(MIN_STEPS, EPOCHS * stream.per_epoch)))
    marks = {round(planned * (k + 1) / CHECKPOINTS) for k in range(CHECKPOINTS)}
    record = Training(planned)

    def checkpoint(run: Trainer) -> None:
        if run.steps in marks:
            record.checkpoints.append((run.steps, predict(run.model, split.eval_inputs, ctx.device)))

    seconds = min(TRAIN_SECONDS, TRAIN_SHARE * ctx.budget.remaining())
    run = Trainer(ctx, stream, seed=ctx.seed, on_step=checkpoint, give_up=float("inf"),
                  progress=lambda message: ctx.progress(f"{STEP}: {message}"))
    run.advance(planned, time.monotonic() + seconds)
    if run.status == "crashed":  # the user's code failed on a later batch: other checks report crashes
        return f"training a copy failed: {run.failure}"
    if run.status == "non-finite":
        return (f"the copy's training loss became NaN/Inf at step {run.steps}; "
                "fix that first (see the NUM and OFB findings)")
    record.steps, record.epochs, record.seconds = run.steps, run.epochs, run.seconds
    record.truncated = run.steps < planned
    if not record.checkpoints or record.checkpoints[-1][0] != run.steps:
        record.checkpoints.append((run.steps, predict(run.model, split.eval_inputs, ctx.device)))
    return TrainedCopy(split, run.model.eval(), record)
