"""Read the same samples twice and say whether they came back the same.

A fixed batch must stay fixed: random augmentation, or labels drawn anew on every read, make a
"single batch" a moving target. Map-style datasets are indexed directly (``dataset[i]`` twice), so a
loader that shuffles on purpose does not count as a difference; other data is read from the start twice.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch.utils.data import DataLoader, IterableDataset

from nndoctor import data as D


@dataclass
class RepeatRead:
    how: str  # what was read twice, for the report
    inputs_differ: bool
    targets_differ: bool

    @property
    def identical(self) -> bool:
        return not (self.inputs_differ or self.targets_differ)


def read_twice(source: D.DataSource, samples: int = 8) -> RepeatRead | None:
    """Compare two reads of the first ``samples`` samples (or of the first batch); None when the data
    cannot be re-read (a one-shot generator, cached by nndoctor) or is not ``(inputs, targets)``."""
    raw = source.raw
    dataset = raw.dataset if isinstance(raw, DataLoader) else raw
    if hasattr(dataset, "__getitem__") and hasattr(dataset, "__len__") and not isinstance(dataset, (IterableDataset, tuple, list)):
        indices = range(min(samples, len(dataset)))
        first, second = [dataset[i] for i in indices], [dataset[i] for i in indices]
        how = f"dataset[i] for the first {len(indices)} samples"
    elif source.one_shot:
        return None
    else:
        first, second = [source.first()], [source.first()]
        how = "the first batch"
    pairs = [(D.split_batch(a), D.split_batch(b)) for a, b in zip(first, second)]
    if any(a is None or b is None for a, b in pairs):
        return None
    return RepeatRead(how, inputs_differ=any(not _same(a[0], b[0]) for a, b in pairs),
                      targets_differ=any(not _same(a[1], b[1]) for a, b in pairs))


def _same(a: Any, b: Any) -> bool:
    ta, tb = D.tensors_in(D.map_tensors(torch.as_tensor, a)), D.tensors_in(D.map_tensors(torch.as_tensor, b))
    if len(ta) != len(tb):
        return False
    if not ta:
        return a == b
    return all(x.shape == y.shape and torch.equal(x, y) for x, y in zip(ta, tb))
