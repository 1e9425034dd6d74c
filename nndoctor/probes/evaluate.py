"""The samples a comparison uses and a model's outputs on given inputs.

Only measures: which samples train and evaluate (the trained copy of checks/trained_copy.py and the
baselines use the same ones) and outputs. No verdicts here.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from nndoctor import data as D
from nndoctor.probes.scoring import main_output

MAX_TRAIN = 4096  # training samples held in memory for the copy
MAX_EVAL = 1000  # evaluation samples (the model, the baselines and the ablations all use the same ones)
MAX_BYTES = 256 * 2**20  # cap on the data held in memory, for wide inputs such as images
HOLD_OUT = 0.2  # share of the training data held out for evaluation when there is no validation data


@dataclass
class Split:
    train_inputs: Any
    train_targets: torch.Tensor
    eval_inputs: Any
    eval_targets: torch.Tensor
    description: str  # where the evaluation samples come from, for the report
    held_out: bool  # evaluation samples were taken out of the training data


def comparison_split(train: D.DataSource, val: D.DataSource | None, seed: int = 0) -> Split | None:
    """Training and evaluation samples, read once: the validation data, else a held-out part of train.

    None when batches are not ``(inputs, targets)`` tensors that can be concatenated.
    """
    per_sample = sum(t.element_size() * t[0].numel() for t in D.tensors_in(train.first()) if t.ndim >= 1)
    cap = max(64, min(MAX_TRAIN, MAX_BYTES // max(per_sample, 1)))
    pair = _collect(train, cap)
    if pair is None:
        return None
    g = torch.Generator().manual_seed(seed)
    if val is not None:
        val_pair = _collect(val, min(4 * MAX_EVAL, cap))
        if val_pair is None:
            return None
        n_val = len(val_pair[1])
        keep = torch.randperm(n_val, generator=g)[:MAX_EVAL].sort().values  # a random subset, in order
        sampled = f"{len(keep)} samples" if len(keep) == n_val else f"{len(keep)} of {n_val} samples read"
        return Split(*pair, D.index(val_pair[0], keep), val_pair[1][keep], f"validation data ({sampled})",
                     held_out=False)
    inputs, targets = pair
    n = len(targets)
    order = torch.randperm(n, generator=g)
    n_eval = min(MAX_EVAL, max(1, int(HOLD_OUT * n)))
    fit, held = order[n_eval:].sort().values, order[:n_eval].sort().values
    return Split(D.index(inputs, fit), targets[fit], D.index(inputs, held), targets[held],
                 f"a held-out {n_eval} of {n} training samples (no val_data given)", held_out=True)


def _collect(source: D.DataSource, max_samples: int) -> tuple[Any, torch.Tensor] | None:
    batch_size = max(1, D.batch_len(source.first()))
    pair = source.collect(max_samples=max_samples, max_batches=math.ceil(max_samples / batch_size) + 1)
    if pair is None or not isinstance(pair[1], torch.Tensor) or not D.tensors_in(pair[0]):
        return None
    inputs, targets = pair
    return D.index(inputs, slice(0, max_samples)), targets[:max_samples]


def predict(model: nn.Module, inputs: Any, device: torch.device, batch_size: int = 256) -> torch.Tensor | None:
    """The model's per-sample output tensor on ``inputs``, in eval mode without gradients (mode restored)."""
    was_training = model.training
    n = D.batch_len(inputs)
    parts = []
    model.eval()
    try:
        with torch.no_grad():
            for start in range(0, n, batch_size):
                chunk = D.to_device(D.index(inputs, slice(start, start + batch_size)), device)
                out = main_output(D.call_model(model, chunk), D.batch_len(chunk))
                if out is None:
                    return None
                parts.append(out.detach().cpu())
    finally:
        model.train(was_training)
    return torch.cat(parts) if parts else None
