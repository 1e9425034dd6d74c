"""ModuleTrace: which module is running, and the shapes that flowed through each module.

Used to locate crashes (the innermost module that started but did not finish) and to show the chain
of output shapes that led to it.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from torch import nn
from torch.overrides import TorchFunctionMode

from nndoctor.data import describe, tensors_in
from nndoctor.probes.module_hooks import ModuleHooks


@dataclass
class Call:
    path: str  # as in model.named_modules(); "" is the model itself
    module: nn.Module
    inputs: str  # shapes/dtypes of the inputs, described
    input_shapes: list[tuple[int, ...]]
    outputs: str | None = None
    output_shapes: list[tuple[int, ...]] = field(default_factory=list)
    done: bool = False


class ModuleTrace(ModuleHooks):
    """Records every module call of ``model`` while active: ``with ModuleTrace(model) as trace: ...``."""
    POST_ALWAYS = True  # the post hook sees the output even when forward raises

    def __init__(self, model: nn.Module, root_name: str = "model"):
        self.model = model
        self.root_name = root_name
        self.calls: list[Call] = []
        self.stack: list[Call] = []
        self._handles: list[Any] = []

    def _pre(self, path: str):
        def hook(module: nn.Module, args: tuple, kwargs: dict) -> None:
            inputs = (args, kwargs) if kwargs else args
            call = Call(path, module, describe(args if not kwargs else {**dict(enumerate(args)), **kwargs}),
                        [tuple(t.shape) for t in tensors_in(inputs)])
            self.calls.append(call)
            self.stack.append(call)

        return hook

    def _post(self, path: str):
        def hook(module: nn.Module, args: tuple, kwargs: dict, output: Any) -> None:
            # always_call=True: runs even when forward raised; then output is None and the call stays open.
            if not self.stack or self.stack[-1].module is not module:
                return
            call = self.stack[-1]
            if output is None and not tensors_in(output):
                return  # forward raised (or returned nothing): leave it on the stack as the failing one
            self.stack.pop()
            call.done = True
            call.outputs = describe(output)
            call.output_shapes = [tuple(t.shape) for t in tensors_in(output)]

        return hook

    def failing(self) -> Call | None:
        """The innermost module that started and did not finish (the one that raised)."""
        open_calls = [c for c in self.calls if not c.done]
        return open_calls[-1] if open_calls else None

    def qualified(self, path: str) -> str:
        return f"{self.root_name}.{path}" if path else self.root_name

    def chain(self, upto: Call | None = None, limit: int = 12) -> list[str]:
        """Output shapes of the leaf modules that finished before ``upto``, oldest first."""
        lines = []
        for call in self.calls:
            if call is upto:
                break
            if call.done and not any(True for _ in call.module.children()):
                lines.append(f"{self.qualified(call.path)} ({type(call.module).__name__}) -> {call.outputs}")
        return lines[-limit:]


class ModuleAwareMode(TorchFunctionMode):
    """A ``TorchFunctionMode`` that also knows which module is running: ``self._modules`` is a
    ModuleTrace of ``model`` (None without a model), entered and left together with the mode."""

    def __init__(self, model: nn.Module | None = None):
        super().__init__()
        self._modules = ModuleTrace(model) if model is not None else None

    def __enter__(self):
        if self._modules is not None:
            self._modules.__enter__()
        try:
            super().__enter__()
        except BaseException:
            if self._modules is not None:
                self._modules.__exit__(None, None, None)
            raise
        return self

    def __exit__(self, *exc: Any) -> None:
        try:
            super().__exit__(*exc)
        finally:
            if self._modules is not None:
                self._modules.__exit__(*exc)
