"""Data-parallel wrappers (``DistributedDataParallel``, ``DataParallel``) hold the user's model as
``.module``: names are reported as in the user's own model (``0.weight``, not ``module.0.weight``)."""
from __future__ import annotations

from torch import nn

WRAPPERS = (nn.DataParallel, nn.parallel.DistributedDataParallel)


def _plain(name: str, wrapped: bool) -> str:
    if not wrapped:
        return name
    return "" if name == "module" else name[len("module."):] if name.startswith("module.") else name


def named_modules(root: nn.Module) -> list[tuple[str, nn.Module]]:
    wrapped = isinstance(root, WRAPPERS)
    return [(_plain(name, wrapped), m) for name, m in root.named_modules() if not (wrapped and m is root)]


def named_parameters(root: nn.Module) -> list[tuple[str, nn.Parameter]]:
    wrapped = isinstance(root, WRAPPERS)
    return [(_plain(name, wrapped), p) for name, p in root.named_parameters()]
