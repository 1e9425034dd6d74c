"""The error that ended the user's training, classified (``probes/errors.py``) with the innermost module
whose forward raised it."""
from __future__ import annotations

from torch import nn

from nndoctor.probes.errors import ErrorInfo, classify
from nndoctor.probes.watchers.base import Watcher


class ErrorsWatcher(Watcher):
    name = "crashes"

    def __init__(self, run) -> None:
        super().__init__(run)
        self.info: ErrorInfo | None = None
        self.module_path: str | None = None

    def on_error(self, exc: BaseException) -> None:
        module = failing_module(exc)
        self.info = classify(exc, "forward" if module is not None else "training")
        self.module_path = self.run.module_path(module) if module is not None else None

    def describe(self) -> str:
        return "the script ran without an exception" if self.info is None else f"the script crashed: {self.info.kind}"


_CALL_IMPL = nn.Module._call_impl.__code__


def failing_module(exc: BaseException) -> nn.Module | None:
    """The innermost module whose forward was running when ``exc`` was raised (from the traceback's frames)."""
    module, tb = None, exc.__traceback__
    while tb is not None:
        if tb.tb_frame.f_code is _CALL_IMPL:
            found = tb.tb_frame.f_locals.get("self")
            module = found if isinstance(found, nn.Module) else module
        tb = tb.tb_next
    return module
