"""Statistics of the data: per-feature scale, non-finite values, row digests, and the layers inputs reach.

Only measures; the DAT checks judge. Features are the flattened non-batch positions of a tensor.
"""
from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

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
    nan: int
    inf: int
    rows: int  # samples with at least one
    positions: list[tuple[int, int]]  # (flattened feature position, count), most affected first

    @property
    def total(self) -> int:
        return self.nan + self.inf


def non_finite(t: torch.Tensor, top: int = 5) -> NonFinite:
    if not t.is_floating_point() and not t.is_complex():
        return NonFinite(0, 0, 0, [])
    flat = t.detach().cpu().reshape(len(t), -1) if t.ndim else t.detach().cpu().reshape(1, 1)
    nan, inf = torch.isnan(flat), torch.isinf(flat)
    bad = nan | inf
    per_position = bad.sum(0)
    order = torch.argsort(per_position, descending=True)[:top]
    positions = [(int(i), int(per_position[i])) for i in order if per_position[i] > 0]
    return NonFinite(int(nan.sum()), int(inf.sum()), int(bad.any(1).sum()), positions)


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
class LayerCall:
    path: str  # as in named_modules()
    module: nn.Module
    inputs: list[torch.Tensor]  # the tensors it received (references, not copies)


class FirstLayers:
    """The first calls of modules that hold weights or normalise, with what they received.

    ``with FirstLayers(model) as layers: model(x)``; ``layers.calls`` is in call order.
    """

    def __init__(self, model: nn.Module, limit: int = 16):
        self.model = model
        self.limit = limit
        self.calls: list[LayerCall] = []
        self._handles: list[Any] = []

    def __enter__(self) -> "FirstLayers":
        for path, module in self.model.named_modules():
            has_weights = any(True for _ in module.parameters(recurse=False))
            if has_weights or isinstance(module, NORMALISATION):
                self._handles.append(module.register_forward_pre_hook(self._hook(path), with_kwargs=True))
        return self

    def __exit__(self, *exc: Any) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles.clear()

    def _hook(self, path: str):
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
