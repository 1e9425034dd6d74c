"""A bottleneck: a hidden Linear of NARROW units or fewer between wider layers, and the change that widens it
(with the next Linear, to match). Shared by the one-batch diagnosis (checks/diagnosis.py) and the compare
step's (checks/compare_causes.py): a width-2 layer can memorise one batch yet leave the whole set below a
linear baseline."""
from __future__ import annotations

import torch
from torch import nn

from nndoctor import fixes
from nndoctor.trainer import Variant

NARROW = 2  # a hidden layer this narrow between wider ones is a bottleneck


def widened(model: nn.Module, seed: int) -> tuple[str, Variant] | None:
    """(what changes, the variant) for the first bottleneck of ``model`` (a fresh copy), else None."""
    linears = [(n, m) for n, m in model.named_modules() if isinstance(m, nn.Linear)]
    for (a_path, a), (b_path, b) in zip(linears, linears[1:]):
        if a.out_features == b.in_features and a.out_features <= NARROW < min(a.in_features, b.out_features + NARROW):
            width = max(32, a.in_features, b.out_features)

            def edit(m: nn.Module, a_path=a_path, b_path=b_path, width=width) -> None:
                old_a, old_b = m.get_submodule(a_path), m.get_submodule(b_path)
                with torch.random.fork_rng(devices=[]):
                    torch.manual_seed(seed)
                    new_a = nn.Linear(old_a.in_features, width, bias=old_a.bias is not None)
                    new_b = nn.Linear(width, old_b.out_features, bias=old_b.bias is not None)
                device = old_a.weight.device
                fixes.replace_module(m, a_path, new_a.to(device))
                fixes.replace_module(m, b_path, new_b.to(device))

            return (f"model.{a_path} widened from {a.out_features} to {width} units",
                    Variant(label=f"wider {a_path}", edit=edit))
    return None
