"""Mode bugs outside ``nn.Module`` state: ``F.dropout(x, p)`` (and ``dropout1d/2d/3d``) left at its default
``training=True`` runs during evaluation (a forward without gradients, model in eval mode), where
``model.eval()`` cannot turn it off. The functions are wrapped for the Monitor's lifetime: one Python test
per call, the original called with the same arguments. A call that passes ``training`` (by keyword or
position) says what it wants (Monte-Carlo dropout on purpose) and is not counted."""
from __future__ import annotations

import sys
from typing import Any

import torch
import torch.nn.functional as F

from nndoctor.probes.errors import user_call_site
from nndoctor.probes.watchers.base import Watcher, outside_nndoctor

# name -> position of ``training`` (the functions whose default is training=True)
_DEFAULT_ON = {"dropout": 2, "dropout1d": 2, "dropout2d": 2, "dropout3d": 2}


class FunctionalModesWatcher(Watcher):
    name = "functional-dropout"

    def __init__(self, run) -> None:
        super().__init__(run)
        self.calls: dict[str, dict[str, Any]] = {}  # user's line -> {"function", "p", "count", "text"}
        self.eval_forwards = 0  # forwards without gradients with the root model in eval mode
        self._eval_root = False  # the last root forward ran in eval mode without gradients
        self._patches = self.patches()


    def start(self) -> None:
        try:
            for name, position in _DEFAULT_ON.items():
                if hasattr(F, name):
                    self._wrap(name, position)
        except Exception:
            self.stop()
            self.broken = True

    def stop(self) -> None:
        self._patches.undo()

    def _wrap(self, name: str, position: int) -> None:
        original = getattr(F, name)
        record = self._patches.guard(self._record)
        watcher = self

        def dropout(*args: Any, **kwargs: Any) -> Any:
            # the cheap test first: only a default-training call during an eval-mode no-grad forward is looked at
            if watcher._eval_root and len(args) <= position and "training" not in kwargs \
                    and not torch.is_grad_enabled():
                record(name, args, kwargs)
            return original(*args, **kwargs)

        dropout.__wrapped__, dropout.__name__, dropout.__doc__ = original, name, original.__doc__  # type: ignore[attr-defined]
        self._patches.replace(F, name, dropout)

    def _record(self, name: str, args: tuple, kwargs: dict) -> None:
        p = kwargs.get("p", args[1] if len(args) > 1 else 0.5)
        if not isinstance(p, (int, float)) or p <= 0:
            return
        site, text = user_call_site(outside_nndoctor(sys._getframe(2)))
        site = site or f"torch.nn.functional.{name}"
        entry = self.calls.setdefault(site, {"function": name, "p": float(p), "count": 0, "text": text})
        entry["count"] += 1

    def on_forward(self, module, inputs, kwargs, training_step: bool) -> None:
        self._eval_root = not training_step and not module.training
        self.eval_forwards += self._eval_root

    def describe(self) -> str:
        return (f"functional dropout calls in {self.eval_forwards} evaluation forwards"
                + (" (stopped: an unexpected object)" if self.broken else ""))
