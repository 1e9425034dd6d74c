"""Compiled models (``torch.compile``): the Monitor's global module hooks must not be traced into the
compiled graph. Dynamo inlines global forward hooks; the hub's hooks keep Python state (the running root),
which Dynamo refuses to track ("already tracked for mutation") and the user's loop would crash. The hub's
hooks therefore return at once inside a compiled region (``torch.compiler.is_compiling()`` is constant-folded
while tracing: no graph break, no recompile); this watcher records which roots were compiled.
The ``OptimizedModule`` itself is called eagerly, so it is the root the watchers see, and names drop its
``_orig_mod.`` (``probes/wrappers.py``).
"""
from __future__ import annotations

from typing import Any

from nndoctor.probes.watchers.base import DONE, Watcher


class CompiledWatcher(Watcher):
    name = "compiled-models"

    def __init__(self, run) -> None:
        super().__init__(run)
        self.compiled_roots: list[str] = []

    def on_forward(self, module, inputs, kwargs, training_step) -> Any:
        if type(module).__name__ == "OptimizedModule":
            self.compiled_roots.append(type(getattr(module, "_orig_mod", module)).__name__)
            return DONE  # one is enough to say so
        return DONE if module is self.run.model else None  # the one model watched is not compiled

    def describe(self) -> str:
        return "compiled models (torch.compile) seen through" if self.compiled_roots else ""
