"""Statistics of the data: per-feature scale, non-finite values, row digests, and the layers inputs reach.

Only measures; the DAT checks judge. Features are the flattened non-batch positions of a tensor.
"""
from __future__ import annotations

import hashlib
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from nndoctor import data as D
from nndoctor.probes.module_hooks import ModuleHooks

MAX_FEATURES = 4096  # wider inputs (images) are summarised on evenly spaced positions

# Layers that normalise what they receive: the scale of their input does not matter.
NORMALISATION = tuple(
    cls for cls in (nn.modules.batchnorm._NormBase, nn.LayerNorm, nn.GroupNorm, nn.LocalResponseNorm,
                    getattr(nn, "RMSNorm", None)) if cls is not None
)


def named_leaves(obj: Any, name: str = "inputs") -> list[tuple[str, torch.Tensor]]:
    """Every tensor in nested inputs with a name a user recognises: inputs, inputs[0], inputs['ids']."""
    if isinstance(obj, Mapping):
        return [leaf for k, v in obj.items() for leaf in named_leaves(v, f"{name}[{k!r}]")]
    if isinstance(obj, (tuple, list)):
        return [leaf for i, v in enumerate(obj) for leaf in named_leaves(v, f"{name}[{i}]")]
    return [(name, obj)] if isinstance(obj, torch.Tensor) else []


def is_feature_tensor(t: torch.Tensor) -> bool:
    """Floating point values, or uint8 (raw pixels); other integers are ids, indices or labels."""
    return (t.is_floating_point() or t.dtype == torch.uint8) and t.ndim >= 1


def feature_matrix(t: torch.Tensor, max_features: int = MAX_FEATURES) -> torch.Tensor:
    """(N, F) float64 view of a batch of samples, F at most ``max_features`` evenly spaced positions."""
    rows = t.detach().cpu().reshape(len(t), -1)
    if rows.shape[1] > max_features:
        rows = rows[:, torch.linspace(0, rows.shape[1] - 1, max_features).long()]
    return rows.double()


@dataclass
class FeatureStats:
    samples: int
    mean: torch.Tensor  # (F,) over the finite values of each feature
    std: torch.Tensor  # (F,)
    rms: torch.Tensor  # (F,) root mean square: the scale a layer sees
    low: float  # smallest and largest finite value
    high: float
    integer_valued: bool  # every finite value is a whole number
    tabular: bool  # a 2-D (N, F) tensor with every column kept: feature i is column i

    @property
    def live(self) -> torch.Tensor:
        """Features that are not constant zero."""
        return self.rms > 0


def feature_stats(t: torch.Tensor) -> FeatureStats:
    x = feature_matrix(t)  # (N, F)
    finite = torch.isfinite(x)
    count = finite.sum(0).clamp(min=1)
    values = torch.where(finite, x, torch.zeros((), dtype=x.dtype))
    mean = values.sum(0) / count
    rms = ((values ** 2).sum(0) / count).sqrt()
    std = (rms ** 2 - mean ** 2).clamp(min=0).sqrt()
    kept = x[finite]
    return FeatureStats(
        samples=len(x), mean=mean, std=std, rms=rms,
        low=float(kept.min()) if kept.numel() else 0.0, high=float(kept.max()) if kept.numel() else 0.0,
        integer_valued=bool(kept.numel()) and bool((kept == kept.round()).all()),
        tabular=t.ndim == 2 and t.shape[1] <= MAX_FEATURES,
    )


@dataclass
class NonFinite:
    """NaN/Inf counts of one tensor, accumulated over batches with ``add``."""

    nan: int = 0
    inf: int = 0
    rows: int = 0  # samples with at least one
    samples: int = 0  # samples seen
    per_position: torch.Tensor | None = None  # (F,) non-finite values per flattened feature position

    @property
    def total(self) -> int:
        return self.nan + self.inf

    def add(self, t: torch.Tensor) -> None:
        flat = t.detach().cpu().reshape(len(t), -1) if t.ndim else t.detach().cpu().reshape(1, 1)
        self.samples += len(flat)
        if not (flat.is_floating_point() or flat.is_complex()):
            return
        finite = torch.isfinite(flat)
        if bool(finite.all()):  # the common case, one pass
            return
        nan, bad = torch.isnan(flat), ~finite
        inf = bad & ~nan
        self.nan += int(nan.sum())
        self.inf += int(inf.sum())
        self.rows += int(bad.any(1).sum())
        counts = bad.sum(0)
        if self.per_position is None or self.per_position.shape != counts.shape:
            self.per_position = counts
        else:
            self.per_position += counts

    def positions(self, top: int = 5) -> list[tuple[int, int]]:
        """(flattened feature position, count), most affected first."""
        if self.per_position is None:
            return []
        order = torch.argsort(self.per_position, descending=True)[:top]
        return [(int(i), int(self.per_position[i])) for i in order if self.per_position[i] > 0]


def row_digests(inputs: Any) -> list[bytes]:
    """One digest per sample of the exact bytes of all its input tensors (identical samples, equal digests)."""
    leaves = [t.detach().cpu().contiguous() for _, t in named_leaves(inputs)]
    if not leaves:
        return []
    n = len(leaves[0])
    blocks = [t.reshape(n, -1).view(torch.uint8).numpy() if t.numel() else None for t in leaves]
    digests = []
    for i in range(n):
        h = hashlib.blake2b(digest_size=16)
        for block in blocks:
            if block is not None:
                h.update(block[i].tobytes())
        digests.append(h.digest())
    return digests


@dataclass
class Scan:
    """One time-bounded pass over a split."""

    sample: tuple[Any, Any] | None  # up to ``max_samples`` (inputs, targets) drawn evenly from all rows read
    targets: torch.Tensor | None  # every target read, in order (None when targets are not tensors)
    digests: dict[bytes, int]  # how often each input (by ``row_digests``) occurred
    non_finite: dict[str, NonFinite]  # per input tensor (``named_leaves`` names) and "targets"
    read: int  # samples read
    complete: bool  # the whole split was read


def scan(source: Any, max_samples: int, seconds: float, seed: int = 0) -> Scan | None:
    """Read batches of ``source`` (a ``DataSource``) for at most ``seconds``, keeping a uniform random sample
    of rows (thinned as it grows), every target and every input's digest. None when batches are not
    ``(inputs, targets)`` pairs with one input row per target."""
    generator = torch.Generator().manual_seed(seed)
    keep_rate, kept, kept_rows = 1.0, [], 0
    targets, digests, read, complete = [], {}, 0, True
    non_finite: dict[str, NonFinite] = {}
    start = time.monotonic()
    for batch in source.batches():
        pair = D.split_batch(batch)
        if pair is None or not _batch_first(*pair):
            return None
        inputs, y = D.to_device(pair, "cpu")
        n = len(y) if isinstance(y, torch.Tensor) and y.ndim else D.batch_len(inputs)
        for digest in row_digests(inputs):
            digests[digest] = digests.get(digest, 0) + 1
        for name, t in named_leaves(inputs) + named_leaves(y, "targets"):
            non_finite.setdefault(name, NonFinite()).add(t)
        targets.append(y)
        chosen = torch.rand(n, generator=generator) < keep_rate  # (n,)
        kept.append(D.index((inputs, y), chosen))
        kept_rows += int(chosen.sum())
        read += n
        if kept_rows > 2 * max_samples:  # keep a random half; later rows are kept at half the rate
            pool = _concat(kept)
            if pool is None:
                return None
            half = torch.rand(kept_rows, generator=generator) < 0.5
            kept, kept_rows, keep_rate = [D.index(pool, half)], int(half.sum()), keep_rate / 2
        if time.monotonic() - start > seconds:
            complete = False
            break
    pool = _concat(kept) if kept else None
    if pool is not None and kept_rows > max_samples:
        pool = D.index(pool, torch.randperm(kept_rows, generator=generator)[:max_samples].sort().values)
    all_targets = _concat(targets)
    return Scan(pool, all_targets if isinstance(all_targets, torch.Tensor) else None, digests, non_finite, read,
                complete)


def _batch_first(inputs: Any, targets: Any) -> bool:
    """Every input tensor has one row per target (time-major batches do not)."""
    n = len(targets) if isinstance(targets, torch.Tensor) and targets.ndim else D.batch_len(inputs)
    return all(t.ndim >= 1 and len(t) == n for t in D.tensors_in(inputs))


def _concat(parts: list[Any]) -> Any:
    try:
        return D.concat(parts)
    except (RuntimeError, TypeError, ValueError):  # e.g. sequences padded to a different length per batch
        return None


@dataclass
class LayerCall:
    path: str  # as in named_modules()
    module: nn.Module
    inputs: list[torch.Tensor]  # the tensors it received (references, not copies)


class FirstLayers(ModuleHooks):
    """The first calls of modules that hold weights or normalise, with what they received.

    ``with FirstLayers(model) as layers: model(x)``; ``layers.calls`` is in call order.
    """

    def __init__(self, model: nn.Module, limit: int = 16):
        self.model = model
        self.limit = limit
        self.calls: list[LayerCall] = []
        self._handles: list[Any] = []

    def _hooks(self, path: str, module: nn.Module) -> bool:
        return any(True for _ in module.parameters(recurse=False)) or isinstance(module, NORMALISATION)

    def _pre(self, path: str):
        def hook(module: nn.Module, args: tuple, kwargs: dict) -> None:
            if len(self.calls) < self.limit:
                tensors = [t for _, t in named_leaves((args, kwargs))]
                self.calls.append(LayerCall(path, module, tensors))

        return hook


def shares_storage(a: torch.Tensor, b: torch.Tensor) -> bool:
    """True when ``a`` and ``b`` view the same memory (one is the other, or a view such as a flatten)."""
    try:
        ptr = a.untyped_storage().data_ptr()
        return ptr != 0 and ptr == b.untyped_storage().data_ptr() and a.device == b.device
    except (RuntimeError, NotImplementedError):
        return False
