"""Small real data sets that ship with scikit-learn (no download), as tensors."""
from __future__ import annotations

from functools import lru_cache

import numpy as np
import torch


def _split(x: torch.Tensor, y: torch.Tensor, seed: int = 0, frac: float = 0.8):
    g = torch.Generator().manual_seed(seed)
    perm = torch.randperm(len(y), generator=g)
    cut = int(frac * len(y))
    return (x[perm[:cut]], y[perm[:cut]]), (x[perm[cut:]], y[perm[cut:]])


@lru_cache(maxsize=None)
def digits(flat: bool = True):
    from sklearn.datasets import load_digits

    d = load_digits()
    x = torch.tensor(d.data, dtype=torch.float32) / 16.0
    if not flat:
        x = x.reshape(-1, 1, 8, 8)
    return _split(x, torch.tensor(d.target, dtype=torch.long))


def _standardize(a: np.ndarray) -> np.ndarray:
    return (a - a.mean(0)) / (a.std(0) + 1e-8)


@lru_cache(maxsize=None)
def breast_cancer():
    from sklearn.datasets import load_breast_cancer

    d = load_breast_cancer()
    x = torch.tensor(_standardize(d.data), dtype=torch.float32)
    return _split(x, torch.tensor(d.target, dtype=torch.float32))


@lru_cache(maxsize=None)
def diabetes():
    from sklearn.datasets import load_diabetes

    d = load_diabetes()
    x = torch.tensor(_standardize(d.data), dtype=torch.float32)
    y = torch.tensor((d.target - d.target.mean()) / d.target.std(), dtype=torch.float32)
    return _split(x, y)


@lru_cache(maxsize=None)
def wine():
    from sklearn.datasets import load_wine

    d = load_wine()
    x = torch.tensor(_standardize(d.data), dtype=torch.float32)
    return _split(x, torch.tensor(d.target, dtype=torch.long))


@lru_cache(maxsize=None)
def token_sequences(n: int = 600, length: int = 12, vocab: int = 50, seed: int = 0):
    """A learnable synthetic sequence task: the class is whether token 1 occurs more than token 2."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randint(3, vocab, (n, length), generator=g)
    ones = torch.randint(0, 4, (n,), generator=g)
    twos = torch.randint(0, 4, (n,), generator=g)
    for i in range(n):
        pos = torch.randperm(length, generator=g)[: ones[i] + twos[i]]
        x[i, pos[: ones[i]]] = 1
        x[i, pos[ones[i]:]] = 2
    y = (ones > twos).long()
    return _split(x, y)
