"""Monitor: the hub of the live checks. It installs PyTorch's global hooks once and passes each event
(``live/events.py``) on to the watchers of ``live/registry.py``, which measure; at the end their judges
(``checks/``) turn the measurements into findings, one check in the report per watcher.
``with nndoctor.Monitor(model, optimizer) as mon: <the user's loop>``, then ``mon.report()``;
``Monitor()`` with no model watches every module and optimizer (``nndoctor run``, framework callbacks).
Hot path: a global forward pre-hook (a post-hook only without a model); one host transfer per optimizer step;
a watcher's event method that returns ``DONE`` is not called for that event again.
"""
from __future__ import annotations

import sys
import time
from typing import Any

import torch
from torch import nn
from torch.nn.modules import module as module_hooks
from torch.optim import optimizer as optimizer_hooks

from nndoctor.findings import Finding
from nndoctor.live.events import EVENTS, MonitorEvents, StopTraining
from nndoctor.live.patch import wrap
from nndoctor.live.registry import LIVE_CHECKS
from nndoctor.live.summary import build_report
from nndoctor.probes.watchers.base import DONE, LiveRun, Watcher, read_step, user_site
from nndoctor.report.model import Report

_compiling = getattr(torch.compiler, "is_compiling", lambda: False)  # compiled graphs: the hooks return at once


class Monitor(MonitorEvents):
    def __init__(self, model: nn.Module | None = None, optimizer: torch.optim.Optimizer | None = None, *,
                 max_steps: int | None = None):
        self.model, self.optimizer, self.max_steps = model, optimizer, max_steps
        self.run = LiveRun(model, optimizer)
        self._model_id = id(model)  # an int: compiled graphs trace the hook, and may not reach the model from it
        self.watchers: list[Watcher] = [check.watcher(self.run) for check in LIVE_CHECKS]
        # per event, the bound methods of the watchers that define it: an unwatched event costs nothing
        self._to = {e: [getattr(w, e) for w in self.watchers if hasattr(type(w), e)] for e in EVENTS}
        self._readers = [w for w in self.watchers if type(w).reads is not Watcher.reads]
        self.findings: list[Finding] = []
        self._found, self._undo = [], []  # the findings per watcher; how to remove each hook and patch
        self._root: nn.Module | None = None  # the root module whose forward is running
        self._started, self._ended, self._report = time.monotonic(), False, None

    steps, losses = property(lambda self: self.run.steps), property(lambda self: self.run.losses)
    grad_norms, error = property(lambda self: self.run.grad_norms), property(lambda self: self.run.error)

    # ----- install / remove ----------------------------------------------------------------------
    def __enter__(self) -> "Monitor":
        if self.model is not None:
            hooks = [module_hooks.register_module_forward_pre_hook(self._pre_model_forward)]
        else:  # every root, and the running one, so that the modules it calls are not roots
            hooks = [module_hooks.register_module_forward_pre_hook(self._pre_forward),
                     module_hooks.register_module_forward_hook(self._post_forward, always_call=True)]
        on = self.optimizer  # given: its own hooks; else every optimizer's
        pre, post = (lambda opt, *_: self.on_before_optimizer_step(opt)), (lambda opt, *_: self.on_after_optimizer_step(opt))
        hooks += [on.register_step_pre_hook(pre), on.register_step_post_hook(post)] if on is not None else \
            [optimizer_hooks.register_optimizer_step_pre_hook(pre), optimizer_hooks.register_optimizer_step_post_hook(post)]
        self._undo += [h.remove for h in hooks]
        # backward() and optimizer construction have no global hook: wrapped for the Monitor's lifetime
        self._undo.append(wrap(torch.Tensor, "backward", before=self._backward))
        self._undo.append(wrap(torch.optim.Optimizer, "__init__", after=self._optimizer_built))
        for w in self.watchers:
            w.start()
            self._undo.append(w.stop)
        return self

    def __exit__(self, exc_type, exc, tb) -> bool:
        self.close()
        if exc is not None and not isinstance(exc, (StopTraining, KeyboardInterrupt, SystemExit)):
            self.on_error(exc)
        self.on_run_end()
        return False

    def close(self) -> None:
        """Remove every hook and wrapper (the last installed first)."""
        while self._undo:
            self._undo.pop()()

    # ----- PyTorch's hooks -> events ----------------------------------------------------------------
    def _pre_model_forward(self, module: nn.Module, args: tuple) -> None:  # the given model: a root wherever
        # it is called (DDP calls it one level down); every other module's call returns after one comparison
        if id(module) == self._model_id and not _compiling() and not self.run.replaying:
            self.on_forward(module, args, {}, torch.is_grad_enabled() and not torch.is_inference_mode_enabled())

    def _pre_forward(self, module: nn.Module, args: tuple) -> None:
        if not (_compiling() or self._root is not None or self.run.replaying):
            self._root = module
            self.on_forward(module, args, {}, torch.is_grad_enabled() and not torch.is_inference_mode_enabled())

    def _post_forward(self, module: nn.Module, args: tuple, output: Any) -> None:
        if not _compiling() and module is self._root:
            self._root = None

    def _backward(self, tensor: torch.Tensor, *args: Any, **kwargs: Any) -> None:
        if tensor.numel() == 1:
            self.on_backward(tensor)

    def _optimizer_built(self, optimizer: torch.optim.Optimizer, *args: Any, **kwargs: Any) -> None:
        if site := user_site(sys._getframe(1)):  # "" when nndoctor itself built it
            self.on_optimizer_created(optimizer, site)

    # ----- events -> watchers ---------------------------------------------------------------------------
    def on_forward(self, module: nn.Module, inputs: tuple, kwargs: dict, training_step: bool) -> None:
        if self.run.saw_forward(module, inputs, kwargs, training_step) is not None:
            self._emit("on_forward", module, inputs, kwargs, training_step)

    def _emit(self, event: str, *args: Any) -> None:
        for f in self._to[event]:
            if f(*args) is DONE:  # (a new list: the loop goes on over the old one)
                self._to[event] = [g for g in self._to[event] if g != f]

    def on_backward(self, loss: torch.Tensor) -> None:
        self.run.backwards += 1
        self._emit("on_backward", loss)

    def on_optimizer_created(self, optimizer: torch.optim.Optimizer, site: str) -> None:
        self._emit("on_optimizer_created", optimizer, site)

    def on_before_optimizer_step(self, optimizer: torch.optim.Optimizer) -> None:
        read_step(self._readers, optimizer)  # every watcher's device scalars: the step's one host transfer
        self._emit("on_before_optimizer_step", optimizer)

    def on_after_optimizer_step(self, optimizer: torch.optim.Optimizer) -> None:
        self.run.stepped(optimizer)
        self._emit("on_after_optimizer_step", optimizer)
        if self.max_steps is not None and self.run.steps >= self.max_steps:
            raise StopTraining()

    def on_loss_value(self, value: float) -> None:
        self._emit("on_loss_value", value)

    def on_error(self, exc: BaseException) -> None:
        self.run.error = exc
        self._emit("on_error", exc)

    def on_run_end(self) -> None:
        if not self._ended:
            self._ended = True
            self._emit("on_run_end")
            self._found = [check.judge(w) for check, w in zip(LIVE_CHECKS, self.watchers)]
            self.findings = [f for found in self._found for f in found]

    def report(self) -> Report:
        """The findings (call after the loop; the context manager judges on exit). In a distributed run every
        rank must call it: rank 0 gets the merged report of all ranks, the others their own."""
        self.on_run_end()
        if self._report is None:
            self._report = build_report(self, self._found, time.monotonic() - self._started)
        return self._report
