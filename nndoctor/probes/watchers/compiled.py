"""Compiled models (``torch.compile``): the Monitor's global module hooks must not be traced into the
compiled graph. Dynamo inlines global forward hooks; the hub's hooks keep Python state (the running root),
which Dynamo refuses to track ("already tracked for mutation") and the user's loop would crash. This
watcher wraps the hub's two hooks, for the Monitor's lifetime, so that inside a compiled region they return
at once (``torch.compiler.is_compiling()`` is constant-folded while tracing: no graph break, no recompile).
The ``OptimizedModule`` itself is called eagerly, so it is the root the watchers see, and names drop its
``_orig_mod.`` (``probes/wrappers.py``). Outside compilation the wrapped hooks call the originals unchanged.
"""
from __future__ import annotations

from typing import Any

import torch
from torch.nn.modules import module as module_hooks

from nndoctor.probes.watchers.base import Watcher


def _compiling() -> bool:
    try:
        return bool(torch.compiler.is_compiling())
    except Exception:
        return False


def _outside_compilation(hook: Any) -> Any:
    def hook_outside_compilation(*args: Any, **kwargs: Any) -> Any:
        if _compiling():
            return None
        return hook(*args, **kwargs)

    hook_outside_compilation.__wrapped__ = hook
    return hook_outside_compilation


class CompiledWatcher(Watcher):
    name = "compiled-models"

    def __init__(self, run) -> None:
        super().__init__(run)
        self._swapped: list[tuple[dict, Any, Any]] = []  # (hook table, key, original hook)
        self.compiled_roots: list[str] = []

    def start(self) -> None:
        try:
            for table in (module_hooks._global_forward_pre_hooks, module_hooks._global_forward_hooks):
                for key, hook in list(table.items()):
                    owner = getattr(hook, "__self__", None)
                    if owner is not None and getattr(owner, "run", None) is self.run:  # this Monitor's own hooks
                        table[key] = _outside_compilation(hook)
                        self._swapped.append((table, key, hook))
        except Exception:  # torch moved its hook tables: nothing to guard, the eager path is unchanged
            self._swapped = []

    def stop(self) -> None:
        while self._swapped:
            table, key, hook = self._swapped.pop()
            if key in table:  # the hub removes its hooks first on close
                table[key] = hook

    def on_forward(self, module, inputs, kwargs, training_step) -> None:
        if type(module).__name__ == "OptimizedModule" and not self.compiled_roots:
            self.compiled_roots.append(type(getattr(module, "_orig_mod", module)).__name__)

    def describe(self) -> str:
        return "compiled models (torch.compile) seen through" if self.compiled_roots else ""
