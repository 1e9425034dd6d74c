"""One forward pass of a fresh copy, in train mode, on the first few samples of a batch: whether a batch of
that size runs at all (batch-norm raises on one value per channel). Measures only; RNG restored."""
from __future__ import annotations

import warnings
from typing import Any

import torch

from nndoctor import data as D


def forward_failure(ctx: Any, batch: Any, samples: int) -> str | None:
    """The error a train-mode forward of the first ``samples`` samples of ``batch`` raises, or None when it
    runs (or the batch cannot be cut or split into inputs and targets: nothing measured)."""
    pair = ctx.pair(batch)
    if pair is None:
        return None
    try:
        inputs = D.index(pair[0], slice(0, samples))
    except (IndexError, TypeError, RuntimeError):
        return None
    model = ctx.fresh_model()
    model.train()
    with torch.random.fork_rng(devices=[]), torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            ctx.forward(model, inputs)
        except (ValueError, RuntimeError) as e:
            return f"{type(e).__name__}: {str(e).splitlines()[0][:200]}"
    return None
