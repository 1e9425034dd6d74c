"""Every accepted data form -> batches of ``(inputs, targets)``, plus helpers to move and slice them.

Accepted forms (INTERFACE.md): a DataLoader, a Dataset, a tuple ``(inputs, targets)`` of tensors
(batched with ``batch_size``), or any iterable of batches. One-shot iterators (generators) are cached
as they are read, so nndoctor can read them more than once.
"""
from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from typing import Any, Callable

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset


def _is_tensorlike(x: Any) -> bool:
    return isinstance(x, (torch.Tensor, np.ndarray))


def _is_tensor_pair(data: Any) -> bool:
    if not (isinstance(data, tuple) and len(data) == 2):
        return False
    inputs, targets = data
    leaves = _leaves(inputs)
    return bool(leaves) and all(_is_tensorlike(t) for t in leaves) and _is_tensorlike(targets) and all(
        getattr(t, "ndim", 0) >= 1 and len(t) == len(targets) for t in leaves
    )


def _leaves(obj: Any) -> list[Any]:
    if isinstance(obj, Mapping):
        return [leaf for v in obj.values() for leaf in _leaves(v)]
    if isinstance(obj, (tuple, list)):
        return [leaf for v in obj for leaf in _leaves(v)]
    return [obj]


def describe_unsupported(data: Any) -> str | None:
    """None when nndoctor can read ``data``; otherwise one sentence saying what is wrong."""
    if isinstance(data, (DataLoader, Dataset)) or _is_tensor_pair(data):
        return None
    if isinstance(data, (str, bytes)):
        return f"got a {type(data).__name__}; expected a DataLoader, Dataset, (inputs, targets) tensors or an iterable of batches"
    if _is_tensorlike(data):
        return "got a single tensor; pass (inputs, targets) as a tuple, a Dataset or a DataLoader"
    if isinstance(data, tuple) and len(data) == 2 and all(_is_tensorlike(t) for t in _leaves(data)):
        a, b = data
        return f"inputs and targets have different lengths ({len(_leaves(a)[0])} and {len(b)})"
    if hasattr(data, "__getitem__") and hasattr(data, "__len__") and not isinstance(data, (list, tuple)):
        return None  # a map-style dataset that does not subclass Dataset
    if isinstance(data, Iterable):
        return None
    return f"{type(data).__name__} is not a DataLoader, Dataset, (inputs, targets) tuple or iterable of batches"


class DataSource:
    """Re-readable batches from any accepted data form."""

    def __init__(self, data: Any, batch_size: int = 64, name: str = "train"):
        self.name = name
        self.raw = data
        self.batch_size = batch_size
        self._cache: list[Any] = []
        self._live: Iterator[Any] | None = None
        self._exhausted = False
        if _is_tensor_pair(data):
            inputs, targets = data
            self._pair = (map_tensors(torch.as_tensor, inputs), torch.as_tensor(targets))
        else:
            self._pair = None
        if self._pair is None and not isinstance(data, (DataLoader, Iterable)) and hasattr(data, "__getitem__"):
            self._loader: Any = DataLoader(data, batch_size=batch_size, shuffle=False)
        elif isinstance(data, Dataset) and not isinstance(data, Iterable):
            self._loader = DataLoader(data, batch_size=batch_size, shuffle=False)
        else:
            self._loader = data

    @property
    def one_shot(self) -> bool:
        """A generator or iterator: reading it consumes it, so we cache what we read."""
        return self._pair is None and isinstance(self._loader, Iterator)

    def __len__(self) -> int:
        if self._pair is not None:
            return -(-len(self._pair[1]) // self.batch_size)
        try:
            return len(self._loader)
        except TypeError:
            return len(self._cache) if self._exhausted else -1

    def batches(self, limit: int | None = None) -> Iterator[Any]:
        """Batches in order, re-readable; at most ``limit``."""
        count = 0
        for batch in self._iterate():
            if limit is not None and count >= limit:
                return
            yield batch
            count += 1

    def _iterate(self) -> Iterator[Any]:
        if self._pair is not None:
            inputs, targets = self._pair
            n = len(targets)
            for start in range(0, n, self.batch_size):
                sl = slice(start, start + self.batch_size)
                yield (index(inputs, sl), targets[sl])
            return
        if not self.one_shot:
            yield from self._loader
            return
        yield from list(self._cache)
        if self._exhausted:
            return
        if self._live is None:
            self._live = iter(self._loader)
        for batch in self._live:
            self._cache.append(batch)
            yield batch
        self._exhausted = True

    def first(self) -> Any:
        for batch in self.batches(limit=1):
            return batch
        raise EmptyDataError(f"{self.name} data yielded no batch")

    def collect(self, max_samples: int = 4096, max_batches: int = 64) -> tuple[Any, Any] | None:
        """Concatenate up to ``max_samples`` samples of ``(inputs, targets)``; None if batches are not pairs."""
        inputs, targets, seen = [], [], 0
        for batch in self.batches(limit=max_batches):
            pair = split_batch(batch)
            if pair is None:
                return None
            x, y = pair
            inputs.append(x)
            targets.append(y)
            seen += batch_len(x)
            if seen >= max_samples:
                break
        if not inputs:
            return None
        try:
            return concat(inputs), concat(targets)
        except (RuntimeError, TypeError, ValueError):
            return None


class EmptyDataError(RuntimeError):
    pass


def split_batch(batch: Any) -> tuple[Any, Any] | None:
    """``(inputs, targets)`` of a batch, or None when the batch is not such a pair (``step`` batches)."""
    if isinstance(batch, (tuple, list)) and len(batch) == 2:
        return batch[0], batch[1]
    return None


def call_model(model: Callable[..., Any], inputs: Any) -> Any:
    """Call the model the way the contract says: tuple -> *args, dict -> **kwargs, else one argument."""
    if isinstance(inputs, Mapping):
        return model(**inputs)
    if isinstance(inputs, (tuple, list)):
        return model(*inputs)
    return model(inputs)


def map_tensors(fn: Callable[[Any], Any], obj: Any) -> Any:
    """Apply ``fn`` to every tensor (or array) inside nested tuples/lists/dicts."""
    if isinstance(obj, Mapping):
        mapped = {k: map_tensors(fn, v) for k, v in obj.items()}
        try:
            return type(obj)(mapped)  # keep dict subclasses such as transformers' BatchEncoding
        except Exception:
            return mapped
    if isinstance(obj, tuple) and hasattr(obj, "_fields"):
        return type(obj)(*(map_tensors(fn, v) for v in obj))
    if isinstance(obj, (tuple, list)):
        return type(obj)(map_tensors(fn, v) for v in obj)
    if _is_tensorlike(obj):
        return fn(obj)
    return obj


def tensors_in(obj: Any) -> list[torch.Tensor]:
    return [t for t in _leaves(obj) if isinstance(t, torch.Tensor)]


def to_device(obj: Any, device: torch.device | str) -> Any:
    return map_tensors(lambda t: torch.as_tensor(t).to(device), obj)


def batch_len(obj: Any) -> int:
    """Number of samples in a batch (the first dimension of its first tensor)."""
    for t in _leaves(obj):
        if _is_tensorlike(t) and getattr(t, "ndim", 0) >= 1:
            return int(t.shape[0])
    return 0


def index(obj: Any, idx: Any) -> Any:
    """Select samples (first dimension) from every tensor of a nested batch."""
    return map_tensors(lambda t: t[idx], obj)


def concat(parts: list[Any]) -> Any:
    first = parts[0]
    if isinstance(first, Mapping):
        return {k: concat([p[k] for p in parts]) for k in first}
    if isinstance(first, (tuple, list)):
        return type(first)(concat([p[i] for p in parts]) for i in range(len(first)))
    if _is_tensorlike(first):
        return torch.cat([torch.as_tensor(p) for p in parts])
    raise TypeError(f"cannot concatenate {type(first).__name__}")


def describe(obj: Any) -> str:
    """A short description of a batch's structure: shapes and dtypes."""
    if isinstance(obj, Mapping):
        return "{" + ", ".join(f"{k}: {describe(v)}" for k, v in obj.items()) + "}"
    if isinstance(obj, (tuple, list)):
        return "(" + ", ".join(describe(v) for v in obj) + ")"
    if isinstance(obj, torch.Tensor):
        return f"{tuple(obj.shape)} {str(obj.dtype).replace('torch.', '')}"
    if isinstance(obj, np.ndarray):
        return f"{obj.shape} {obj.dtype}"
    return type(obj).__name__
