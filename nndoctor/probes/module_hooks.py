"""The base of the probes that hook every submodule of one model for the length of a ``with`` block.

A subclass says what to record: ``_pre(path)`` and ``_post(path)`` return the hooks for the module at
``path`` (or None for none), ``_hooks(path, module)`` may pass a module over. The hooks go in on entry
(all of them or, if registering fails half-way, none) and always come out on exit.
"""
from __future__ import annotations

from typing import Any, Callable

from torch import nn

Hook = Callable[..., Any]


class ModuleHooks:
    model: nn.Module
    POST_KWARGS = True  # the post hook is called as hook(module, args, kwargs, output)
    POST_ALWAYS = False  # the post hook runs even when the module's forward raises

    def _pre(self, path: str) -> Hook | None:
        """Called as hook(module, args, kwargs) before the module at ``path`` runs."""
        return None

    def _post(self, path: str) -> Hook | None:
        return None

    def _hooks(self, path: str, module: nn.Module) -> bool:
        return True

    def __enter__(self):
        self._handles: list[Any] = getattr(self, "_handles", None) or []
        try:
            for path, module in self.model.named_modules():
                if not self._hooks(path, module):
                    continue
                pre, post = self._pre(path), self._post(path)
                if pre is not None:
                    self._handles.append(module.register_forward_pre_hook(pre, with_kwargs=True))
                if post is not None:
                    self._handles.append(module.register_forward_hook(post, with_kwargs=self.POST_KWARGS,
                                                                      always_call=self.POST_ALWAYS))
        except BaseException:
            self.__exit__()
            raise
        return self

    def __exit__(self, *exc: Any) -> None:
        for handle in getattr(self, "_handles", []):
            handle.remove()
        self._handles = []
