"""The sample of each split that the data checks (DAT, checks/data_*.py) read: one time-bounded scan per
split, shared, and how a split and a feature position are named in messages. Measures only: no check here."""
from __future__ import annotations

from typing import Any

import numpy as np

from nndoctor.checks import SkipCheck
from nndoctor.context import Context
from nndoctor.probes.data_stats import Scan, scan

SAMPLE = 2048  # samples kept per split for statistics, drawn evenly from everything read
SCAN_SECONDS = 2.0  # reading a split (hashing inputs, counting targets) stops after this
ORDER_BATCHES = 8  # batches read in order to see whether they are sorted by target


def split_scan(ctx: Context, split: str) -> Scan | None:
    """One time-bounded pass over a split, shared by the DAT checks; None without that split or pairs."""
    source = ctx.train if split == "train" else ctx.val

    def read() -> Scan | None:
        if source is None or ctx.setup.step is not None:
            return None
        try:
            return scan(source, SAMPLE, min(SCAN_SECONDS, ctx.budget.remaining() / 20), seed=ctx.seed)
        except Exception:  # the user's loader raised: step 1 reports reading errors
            return None

    return ctx.measure(f"data_scan:{split}", read)


def split_sample(ctx: Context, split: str) -> tuple[Any, Any] | None:
    """Up to SAMPLE ``(inputs, targets)`` of a split on the CPU."""
    found = split_scan(ctx, split)
    return found.sample if found is not None else None


def train_sample(ctx: Context) -> tuple[Any, Any]:
    sample = split_sample(ctx, "train")
    if sample is None:
        raise SkipCheck("training batches are not batch-first (inputs, targets) pairs of tensors")
    return sample


def split_location(split: str, name: str = "inputs", leaves: int = 1) -> str:
    return f"{split}_data" if leaves == 1 and name == "inputs" else f"{split}_data {name}"


SPLIT_NAMES = {"train": "training", "val": "validation"}


def position(shape: tuple[int, ...], flat: int) -> str:
    """A flattened feature position as the index a user would write: 7, or (0, 3, 5) for an image."""
    if len(shape) <= 1:
        return str(flat)
    return str(tuple(int(i) for i in np.unravel_index(flat, shape)))
