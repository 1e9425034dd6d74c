"""What every live watcher shares: the ``Watcher`` base class and ``LiveRun``, the run's common facts.

A watcher measures one concern of a live training run. The Monitor hub (``nndoctor/live/monitor.py``)
calls the event methods a watcher defines (the events are declared in ``nndoctor/live/events.py``;
a watcher defines only those it needs, so an event nobody watches costs nothing) and, once per
optimizer step, gathers every watcher's device-side scalars in ONE host transfer:

    reads(optimizer)          -> tensors to read now (0-d or 1-d), on any device, or []
    on_read(optimizer, values) <- the same number of floats, in order

An event method that returns ``DONE`` is not called for that event again (a CPU run for the GPU watcher, a
single process for the ranks watcher): what a watcher no longer needs costs the step nothing.

Watchers never judge: at the end the judge registered next to the watcher (``nndoctor/live/registry.py``)
turns ``watcher.measured()`` into findings.
"""
from __future__ import annotations

import os
import weakref
from typing import Any, Sequence

import torch
from torch import nn

from nndoctor.probes.errors import is_library_file, user_call_site
from nndoctor.probes.sharded import is_sharded, local
from nndoctor.probes.watchers.guarded import Patches
from nndoctor.probes.wrappers import named_modules, named_parameters


class _Done:
    """What an event method (or ``reads``) returns when its watcher needs that event no more."""

    def __repr__(self) -> str:
        return "DONE"


DONE = _Done()  # the hub stops calling that method for that event


class Watcher:
    name = "watcher"  # the name of the check in the report's list
    failed: str | None = None  # why the hub switched this watcher off (it raised), for the report
    broken = False  # a callback of one of its own patches raised: it stopped watching (set by ``patches``)

    def __init__(self, run: "LiveRun") -> None:
        self.run = run

    def patches(self) -> Patches:
        """Patches of other functions for this watcher: their callbacks are skipped during nndoctor's own
        replays and once one of them raised (``broken``), so they never raise into the user's loop."""
        return Patches(self)

    def start(self) -> None:
        """The Monitor was entered: install any patch of this watcher's own (removed in ``stop``)."""

    def stop(self) -> None:
        """The Monitor is closing: remove what ``start`` installed. Must be safe to call twice."""

    def reads(self, optimizer: torch.optim.Optimizer) -> Sequence[torch.Tensor] | _Done:
        """Device scalars to read at this optimizer step (before it applies), all in the hub's one transfer.
        0-d tensors are cheapest (stacked as they are); 1-d ones (not empty) are flattened into the same
        transfer. ``DONE``: nothing to read at this step or any later one."""
        return ()

    def on_read(self, optimizer: torch.optim.Optimizer, values: list[float]) -> None:
        """The floats of ``reads``, in order (called only when ``reads`` gave any)."""

    def describe(self) -> str:
        """One line for the report's check list: what this watcher watched."""
        return ""


class Root:
    """What the watchers know about one root module (a model called from outside any other module)."""

    def __init__(self, module: nn.Module):
        self.ref = weakref.ref(module)
        self.modules = dict(named_modules(module))
        self.names = {id(p): name for name, p in named_parameters(module)}
        self.params = [p for _, p in named_parameters(module)]
        self._trainable: tuple[bool, int] | None = None  # (any parameter trainable, step it was read)
        self.trained = False  # seen in a forward with gradients enabled

    def trainable(self, step: int) -> bool:
        """Any parameter with ``requires_grad``: read again every 32 steps, not on every forward."""
        if self._trainable is None or step - self._trainable[1] >= 32:
            self._trainable = (any(p.requires_grad for p in self.params), step)
        return self._trainable[0]


class LiveRun:
    """Facts of the run every watcher may read; the hub and the curve watcher keep them current."""

    def __init__(self, model: nn.Module | None, optimizer: torch.optim.Optimizer | None) -> None:
        self.model = model
        self.optimizer = optimizer
        self.steps = 0  # optimizer steps, all optimizers together
        self.steps_of: dict[int, int] = {}  # id(optimizer) -> its steps (counted before the watchers hear)
        self.backwards = 0  # backward() calls on a scalar
        self.losses: list[float] = []
        self.grad_norms: list[float] = []
        self.step_loss: float | None = None  # this step's loss and total gradient norm (the curve watcher's)
        self.step_norm = 0.0
        self.loss_owners: set[int] = set()  # optimizers that stepped right after a backward of their own
        self.roots: dict[int, Root] = {}
        self.last_train_call: tuple[nn.Module, tuple, dict] | None = None
        self.replaying = False  # a watcher's own replay of a step must not be watched
        self.error: BaseException | None = None
        self.trains = False  # the last root forward trained a root with trainable parameters (saw_forward)
        self._optimizer_params: dict[int, tuple[int, list[torch.Tensor], bool]] = {}  # (groups, params, sharded)

    def stepped(self, optimizer: torch.optim.Optimizer) -> None:
        """An optimizer step ran (the hub tells, before the watchers hear of it)."""
        self.steps += 1
        self.steps_of[id(optimizer)] = self.steps_of.get(id(optimizer), 0) + 1

    def root(self, module: nn.Module) -> Root:
        r = self.roots.get(id(module))
        if r is None or r.ref() is not module:
            r = self.roots[id(module)] = Root(module)
        return r

    def saw_forward(self, module: nn.Module, inputs: tuple, kwargs: dict, training_step: bool) -> Root | None:
        """Book a root module's call; None for one without parameters (a loss module: nothing to watch)."""
        root = self.roots.get(id(module))  # (``root()`` inlined: this runs on every root call)
        if root is None or root.ref() is not module:
            root = self.root(module)
        if not root.params:
            return None
        self.trains = training_step and root.trainable(self.steps)
        if self.trains:
            root.trained = True
            self.last_train_call = (module, inputs, kwargs)
        return root

    def _params_of(self, optimizer: torch.optim.Optimizer) -> tuple[int, list[torch.Tensor], bool]:
        cached = self._optimizer_params.get(id(optimizer))
        groups = len(optimizer.param_groups)
        if cached is None or cached[0] != groups:
            params = [p for g in optimizer.param_groups for p in g["params"] if p.requires_grad]
            cached = self._optimizer_params[id(optimizer)] = (groups, params, any(map(is_sharded, params)))
        return cached

    def trainable_params(self, optimizer: torch.optim.Optimizer) -> list[torch.Tensor]:
        """The optimizer's parameters that require gradients, cached (a group added later is seen too)."""
        return self._params_of(optimizer)[1]

    def grads(self, optimizer: torch.optim.Optimizer) -> list[torch.Tensor]:
        """The gradients of those parameters that have one; of a sharded parameter, this rank's shard (no
        collective). Whether any is sharded is asked once per optimizer, not per gradient per step."""
        _, params, sharded = self._params_of(optimizer)
        grads = [g for p in params if (g := p.grad) is not None]
        return [local(g) for g in grads] if sharded else grads

    def module_path(self, target: nn.Module) -> str | None:
        for r in self.roots.values():
            root = r.ref()
            if root is None:
                continue
            for name, m in named_modules(root):  # read now: the model may have changed since it was first seen
                if m is target:
                    return f"model.{name}".rstrip(".")
        return None


def outside_nndoctor(frame: Any) -> Any:
    """The first frame, walking out from ``frame``, that is not nndoctor's own (the hub's, a watcher's)."""
    while frame is not None and _kind(frame.f_code.co_filename) == _OURS:
        frame = frame.f_back
    return frame


def user_site(frame: Any) -> str:
    """``user_call_site(outside_nndoctor(frame))[0]``: the user's "file.py:12" that led here, or "". Asked on
    every backward and zero_grad, so each file's kind and each line's text are worked out once, and the walk
    is one loop of dictionary lookups."""
    kinds, leading = _kinds, True
    while frame is not None:
        filename = frame.f_code.co_filename
        kind = kinds.get(filename)
        if kind is None:
            kind = _kind(filename)
        if kind == _USER:
            key = (filename, frame.f_lineno)
            site = _sites.get(key)
            if site is None:
                site = user_call_site(frame)[0]
                if len(_sites) < 4096:
                    _sites[key] = site
            return site
        if kind == _OURS and not leading:  # library code called straight from nndoctor
            return ""
        leading = leading and kind == _OURS
        frame = frame.f_back
    return ""


_NNDOCTOR_DIR = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
_OURS, _LIBRARY, _USER = 0, 1, 2
_kinds: dict[str, int] = {}  # a code object's file name -> its kind (os.path.abspath costs microseconds)
_sites: dict[tuple[str, int], str] = {}


def _kind(filename: str) -> int:
    kind = _kinds.get(filename)
    if kind is None:
        kind = _OURS if os.path.abspath(filename).startswith(_NNDOCTOR_DIR) else \
            _LIBRARY if is_library_file(filename) else _USER
        if len(_kinds) < 4096:
            _kinds[filename] = kind
    return kind


def read_once(tensors: list[torch.Tensor]) -> list[float]:
    """Every tensor's values as floats, in order, with ONE device-to-host transfer (tensors on an accelerator
    are gathered there first; on the CPU each is read as it is)."""
    if not tensors:
        return []
    if all(t.is_cpu for t in tensors):  # no transfer to save: reading each costs less than a stack (measured)
        values: list[float] = []
        for t in tensors:
            if t.dim() == 0:
                values.append(float(t))
            else:
                values.extend(map(float, t.reshape(-1).tolist()))
        return values
    try:  # same-shaped tensors on one device (scalars, the usual case): one op, then the transfer; stacked
        stacked = torch.stack(tensors)  # rows flatten in the same order as the tensors
        return (stacked if stacked.dim() == 1 else stacked.reshape(-1)).tolist()
    except RuntimeError:  # several shapes or devices
        pass
    flat = [t.detach().reshape(-1).float() for t in tensors]
    device = next((t.device for t in flat if t.device.type != "cpu"), None)
    return torch.cat([t.to(device) for t in flat] if device is not None else flat).tolist()


def read_step(watchers: list[Watcher], optimizer: torch.optim.Optimizer) -> None:
    """Ask each watcher for its ``reads``, read them all at once, hand each its floats (``on_read``). A watcher
    that raises (an exotic tensor type, a model it cannot read) is switched off, never the user's step; one
    whose ``reads`` gave ``DONE`` leaves ``watchers``."""
    asked, tensors, done = [], [], []
    for w in watchers:
        if w.failed is None:
            try:
                ts = w.reads(optimizer)
                if ts is DONE:
                    done.append(w)
                elif ts:
                    asked.append((w, ts))
                    tensors.extend(ts)
            except Exception as exc:  # noqa: BLE001 - a measurement must not break training
                w.failed = f"{type(exc).__name__}: {exc}"
    for w in done:  # not asked again
        watchers.remove(w)
    if not asked:
        return
    try:
        values = read_once(tensors)
    except Exception:  # noqa: BLE001 - one unreadable tensor: read each watcher's alone
        values = None
    # as many values as tensors: each gave one (none is empty), so a watcher's share is its number of tensors
    scalars = values is not None and len(values) == len(tensors)
    at = 0
    for w, ts in asked:
        try:
            n = len(ts) if scalars else sum(t.numel() for t in ts)
            mine = values[at:at + n] if values is not None else read_once(list(ts))
            at += n
            w.on_read(optimizer, mine)
        except Exception as exc:  # noqa: BLE001
            w.failed = f"{type(exc).__name__}: {exc}"
