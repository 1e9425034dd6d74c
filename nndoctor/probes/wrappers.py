"""Data-parallel wrappers (``DistributedDataParallel``, ``DataParallel``) hold the user's model as
``.module``, and ``torch.compile``'s ``OptimizedModule`` as ``._orig_mod``: names are reported as in the
user's own model (``0.weight``, not ``module.0.weight`` or ``_orig_mod.0.weight``), through any nesting."""
from __future__ import annotations

from torch import nn

WRAPPERS = (nn.DataParallel, nn.parallel.DistributedDataParallel)


def _compiled(m: nn.Module) -> bool:
    return type(m).__name__ == "OptimizedModule" and isinstance(getattr(m, "_orig_mod", None), nn.Module)


def _prefixes(root: nn.Module) -> list[str]:
    """The attribute path of each wrapper level around the user's model (DDP around a compiled model...)."""
    out, m = [], root
    while True:
        if isinstance(m, WRAPPERS):
            out.append("module")
            m = m.module
        elif _compiled(m):
            out.append("_orig_mod")
            m = m._orig_mod
        else:
            return out


def _plain(name: str, prefixes: list[str]) -> str:
    for p in prefixes:
        if name == p:
            return ""
        if name.startswith(p + "."):
            name = name[len(p) + 1:]
    return name


def named_modules(root: nn.Module) -> list[tuple[str, nn.Module]]:
    prefixes = _prefixes(root)
    wrappers = {".".join(prefixes[:i]) for i in range(len(prefixes))}  # the wrapper modules themselves
    return [(_plain(name, prefixes), m) for name, m in root.named_modules() if not (prefixes and name in wrappers)]


def named_parameters(root: nn.Module) -> list[tuple[str, nn.Parameter]]:
    prefixes = _prefixes(root)
    return [(_plain(name, prefixes), p) for name, p in root.named_parameters()]
