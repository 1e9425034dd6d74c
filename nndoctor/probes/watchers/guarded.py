"""A watcher's own patch of a rarely-called function (zero_grad, clipping, GradScaler's methods): it calls the
original with the same arguments and returns its result; the watcher's callbacks never raise into the
user's loop (the first exception turns the watcher off)."""
from __future__ import annotations

from typing import Any, Callable


class Patches:
    def __init__(self, watcher: Any) -> None:
        """Callbacks of ``watcher``: skipped while it is ``broken`` or its run is replaying a step."""
        self._watcher = watcher
        self._undo: list[Callable[[], None]] = []

    def guard(self, f: Callable | None) -> Callable | None:
        if f is None:
            return None
        watcher = self._watcher

        def safe(*args: Any, **kwargs: Any) -> Any:
            if watcher.broken or watcher.run.replaying:  # (attribute reads, no call: these wrap hot functions)
                return None
            try:
                return f(*args, **kwargs)
            except Exception:  # never into the user's loop: the watcher stops watching
                watcher.broken = True
                return None

        return safe

    def method(self, owner: Any, name: str, before: Callable | None = None, after: Callable | None = None) -> None:
        """``before(*args)`` and ``after(result, *args)`` around ``owner.name`` until ``undo``."""
        original = owner.__dict__[name] if name in getattr(owner, "__dict__", {}) else getattr(owner, name)
        watcher = self._watcher

        def wrapper(*args: Any, **kwargs: Any) -> Any:  # the guard of ``guard`` inlined: one call fewer
            if before is not None and not (watcher.broken or watcher.run.replaying):
                try:
                    before(*args, **kwargs)
                except Exception:
                    watcher.broken = True
            result = original(*args, **kwargs)
            if after is not None and not (watcher.broken or watcher.run.replaying):
                try:
                    after(result, *args, **kwargs)
                except Exception:
                    watcher.broken = True
            return result

        wrapper.__wrapped__ = original  # type: ignore[attr-defined]
        wrapper.__name__, wrapper.__doc__ = getattr(original, "__name__", name), getattr(original, "__doc__", None)
        self.replace(owner, name, wrapper)

    def replace(self, owner: Any, name: str, new: Any) -> None:
        original = owner.__dict__[name] if name in getattr(owner, "__dict__", {}) else getattr(owner, name)
        setattr(owner, name, new)
        self._undo.append(lambda: setattr(owner, name, original))

    def undo(self) -> None:
        while self._undo:
            self._undo.pop()()
