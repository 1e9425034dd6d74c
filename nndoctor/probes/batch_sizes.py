"""The batch sizes a training loader yields in an epoch, read from its settings rather than by iterating.

A ``DataLoader`` (or a Dataset or tensors, which nndoctor batches itself) yields full batches and,
unless ``drop_last=True``, a last batch of ``len(samples) % batch_size``. Loaders whose batching
nndoctor cannot read (an iterable dataset, a custom batch sampler without ``batch_size``, a generator)
give None. Only measures.
"""
from __future__ import annotations

from collections.abc import Sized
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, IterableDataset

from nndoctor.data import DataSource


@dataclass(frozen=True)
class BatchSizes:
    samples: int  # samples per epoch
    batch_size: int
    drop_last: bool
    how: str  # how the batches are made, in the user's words: "DataLoader(batch_size=64, drop_last=False)"

    @property
    def last(self) -> int:
        """Size of the last batch of an epoch (``batch_size`` when it is full or dropped)."""
        rest = self.samples % self.batch_size
        return self.batch_size if rest == 0 or self.drop_last else rest

    @property
    def sizes(self) -> list[int]:
        """The distinct batch sizes of an epoch, smallest first."""
        full = [self.batch_size] if self.samples >= self.batch_size else []
        return sorted(set(full + ([self.last] if self.last != self.batch_size or not full else [])))


def batch_sizes(source: DataSource) -> BatchSizes | None:
    data = source.raw
    batched_by_setup = f"batched by Setup(batch_size={source.batch_size})"
    if isinstance(data, tuple) and len(data) == 2 and isinstance(data[1], (torch.Tensor, np.ndarray)):  # (x, y)
        return BatchSizes(len(data[1]), source.batch_size, False, f"tensors {batched_by_setup}")
    if isinstance(data, DataLoader):
        return _loader_sizes(data)
    dataset = isinstance(data, Sized) and hasattr(data, "__getitem__")
    if dataset and not isinstance(data, (IterableDataset, list, tuple)):
        return BatchSizes(len(data), source.batch_size, False, f"a Dataset {batched_by_setup}")
    return None


def _loader_sizes(loader: DataLoader) -> BatchSizes | None:
    if isinstance(loader.dataset, IterableDataset):
        return None
    batcher: Any = loader if loader.batch_size is not None else loader.batch_sampler
    size, drop_last = getattr(batcher, "batch_size", None), getattr(batcher, "drop_last", None)
    sampler = loader.sampler if batcher is loader else getattr(batcher, "sampler", None)
    if not isinstance(size, int) or size < 1 or not isinstance(drop_last, bool) or not isinstance(sampler, Sized):
        return None
    return BatchSizes(len(sampler), size, drop_last, f"DataLoader(batch_size={size}, drop_last={drop_last})")
