"""The order of each optimizer's gradient events: backward (one that reached its parameters), zero_grad
(``Optimizer.zero_grad`` or ``Module.zero_grad`` over its parameters), gradient clipping, GradScaler's
scale/unscale_ and the step. From the order alone:

- zeroed before the step: backward ran, then a zero_grad, then the step (it applies no gradient);
- accumulation reset: a zero_grad discarded gradients that no step used (the params did not change and no
  step was tried since), then more backward before the step: only the last micro-batches count;
- summed micro-batches: several backward (each after a fresh forward) add into one step and no loss was
  divided (the loss's last op is not a division or a product by a constant);
- clipping before the backward of the step (it clipped nothing of the step's gradients), or of gradients a
  GradScaler has scaled and not unscaled (the threshold is compared with the scaled norm).

A window runs from one optimizer step to the next, judged after the step (Lightning runs zero_grad and
backward inside the step's closure). Per backward: two leaf hooks per optimizer; no host transfer. The
patches call the originals with the same arguments (a generator of parameters is read into a list first)."""
from __future__ import annotations

import math
import sys
import weakref
from typing import Any, Callable

import torch
from torch import nn

from nndoctor.probes.watchers.base import Watcher, user_site

_SCALING_OPS = {"DivBackward0", "DivBackward1", "MulBackward0", "MulBackward1"}
_CLIPS = (("clip_grad_norm_", "norm"), ("clip_grad_value_", "value"))


def _site() -> str:
    """The user's line that led here (nndoctor's and the libraries' frames skipped)."""
    return user_site(sys._getframe(1))


_current_graph_task = torch._C._current_graph_task_id  # the autograd engine's id of the running backward call


class Tally:
    """How many times something happened, and the first ``KEPT`` of them (a long run holds no more)."""

    KEPT = 64

    def __init__(self) -> None:
        self.n = 0
        self.kept: list[Any] = []

    def add(self, item: Any) -> None:
        self.n += 1
        if len(self.kept) < self.KEPT:
            self.kept.append(item)


class _Order:
    """One optimizer's window (since its last step) and its counts over the run."""

    def __init__(self, params: list[torch.Tensor]) -> None:
        self.keys = {id(p) for p in (params[0], params[-1])}
        self.first = params[0]
        self.micro = 0  # backward calls whose gradients are in .grad now (since the last zero_grad over them)
        self.unaveraged = 0  # of those, after a fresh forward, with a loss not divided by a constant
        self.fresh = 0  # of those, after a fresh forward
        self.since_zero = False  # a zero_grad over these parameters ran since the window began
        self.pending_at: tuple[int, int] = (0, 0)  # (step attempts, params' version) at the first of ``micro``
        self.window_backwards = 0
        self.wiped = 0  # backward calls in this window whose gradients a zero_grad discarded unused
        self.wipe_site = ""
        self.zero_site = ""  # the zero_grad that came after the window's last backward
        self.clip: dict[str, Any] | None = None  # the window's last clip call
        self.backward_after_clip = False
        self.last_bw: Any = None
        self.last_site = ""  # the user's line of the last backward that reached these parameters
        self.unaveraged_sites: set[str] = set()
        self.live_sites: set[str] = set()  # lines of the backward calls whose gradients are in .grad now
        self.wiped_sites: set[str] = set()
        self.steps = 0
        # over the run
        self.zeroed_steps = Tally()  # sites of the zero_grad
        self.reset_steps = Tally()  # (micro-batches, site of the zero_grad)
        self.summed_steps = Tally()  # (micro-batches, backward site)
        self.late_clips = Tally()  # the clip's record, with the step's gradient norm
        self.late_over = (0, 0.0)  # late clips whose step's norm was above the threshold: (count, largest norm)
        self.scaled_clips = Tally()  # the clip's record, with its returned norm and the scale (read at the end)
        self.optimizer_type = ""
        self.lr = 0.0

    def covers(self, ids: set[int]) -> bool:
        return bool(self.keys & ids)


class StepOrderWatcher(Watcher):
    name = "step-order"

    def __init__(self, run) -> None:
        super().__init__(run)
        self.orders: dict[int, _Order] = {}
        self._handles: list[Any] = []
        self._patches = self.patches()
        self._bw = 0  # backward calls seen
        self._bw_info: tuple[bool, bool, str] = (False, False, "")  # (fresh forward, loss scaled, site)
        self._fresh = False
        self._attempts = 0  # optimizer steps tried through a GradScaler (a skipped step still used the grads)
        self._scaled: tuple[int, torch.Tensor] | None = None  # (id of scaler.scale's output, its input)
        self._scalers: dict[int, dict[str, Any]] = {}  # id(scaler) -> {"scaled", "unscaled": set of optimizer ids}
        self._held: dict[int, tuple[Any, int, set[int]]] = {}  # id(optimizer) -> (weakref, groups, its params' ids)
        if run.optimizer is not None:
            self._track(run.optimizer)

    # ----- patches ---------------------------------------------------------------------------------------
    def start(self) -> None:
        try:
            patch = self._patches.method
            patch(torch.optim.Optimizer, "zero_grad", self._zero_optimizer)
            patch(nn.Module, "zero_grad", self._zero_module)
            for module in (torch.nn.utils, torch.nn.utils.clip_grad):
                for name, kind in _CLIPS:
                    if hasattr(module, name):
                        self._patch_clip(module, name, kind)
            from torch.amp.grad_scaler import GradScaler

            patch(GradScaler, "scale", None, self._after_scale)
            patch(GradScaler, "unscale_", self._unscale)
            patch(GradScaler, "step", self._scaler_step)
            patch(GradScaler, "update", self._scaler_update)
        except Exception:
            self.stop()
            self.broken = True


    def stop(self) -> None:
        self._patches.undo()
        for handle in self._handles:
            handle.remove()
        self._handles.clear()

    def _patch_clip(self, module: Any, name: str, kind: str) -> None:
        original = getattr(module, name)
        record = self._patches.guard(self._clip)

        def clip(parameters: Any, *args: Any, **kwargs: Any) -> Any:
            if not isinstance(parameters, torch.Tensor):
                parameters = list(parameters)  # a generator is read once, here, and passed on as a list
            result = original(parameters, *args, **kwargs)
            record(kind, parameters, result, args, kwargs)
            return result

        clip.__wrapped__, clip.__name__, clip.__doc__ = original, name, original.__doc__  # type: ignore[attr-defined]
        self._patches.replace(module, name, clip)

    # ----- optimizers ----------------------------------------------------------------------------------
    def _track(self, optimizer: torch.optim.Optimizer) -> _Order | None:
        o = self.orders.get(id(optimizer))
        if o is not None:
            return o
        params = self.run.trainable_params(optimizer)
        if not params:
            return None
        o = self.orders[id(optimizer)] = _Order(params)
        o.optimizer_type = type(optimizer).__name__
        for p in {id(p): p for p in (params[0], params[-1])}.values():
            self._handles.append(p.register_hook(self._hook(o)))
        return o

    def on_optimizer_created(self, optimizer, site: str) -> None:
        # its parameters are complete once __init__ returned (the event comes after it)
        if not self.broken:
            try:
                self._track(optimizer)
            except Exception:  # an exotic optimizer or parameter: stop watching, never break the user's code
                self.broken = True

    def _hook(self, o: _Order) -> Callable:
        def hook(grad: torch.Tensor) -> None:
            task = _current_graph_task()  # one per backward call, torch.autograd.backward's included
            if self.broken or self.run.replaying or o.last_bw == task:
                return
            o.last_bw = task  # once per backward call, whichever hooked parameter it reaches
            fresh, scaled, site = self._bw_info
            o.last_site = site
            if o.micro == 0:
                o.pending_at = (self._tries(), o.first._version)
            o.micro += 1
            o.live_sites.add(site)
            o.fresh += fresh
            if fresh and not scaled:
                o.unaveraged += 1
                o.unaveraged_sites.add(site)
            o.window_backwards += 1
            o.zero_site = ""
            if o.clip is not None:
                o.backward_after_clip = True

        return hook

    def _tries(self) -> int:
        return self.run.steps + self._attempts

    # ----- events -------------------------------------------------------------------------------------
    def on_forward(self, module, inputs, kwargs, training_step: bool) -> None:
        if training_step:
            self._fresh = True

    def on_backward(self, loss: torch.Tensor) -> None:
        if self.broken or self.run.replaying:
            return
        try:
            self._bw += 1
            if self._scaled is not None and self._scaled[0] == id(loss):
                loss = self._scaled[1]  # the loss under GradScaler's product
            self._scaled = None
            fn = loss.grad_fn
            self._bw_info = (self._fresh, fn is not None and type(fn).__name__ in _SCALING_OPS,
                             user_site(sys._getframe()))
            self._fresh = False
        except Exception:
            self.broken = True

    def _zeroed(self, ids: set[int]) -> None:
        for o in self.orders.values():
            if not o.covers(ids):
                continue
            if o.micro:
                tries, version = o.pending_at
                if tries == self._tries() and version == o.first._version:  # no step used these gradients
                    o.wiped += o.micro
                    o.wiped_sites |= o.live_sites
                    o.wipe_site = o.wipe_site or _site() or "zero_grad"
                if o.window_backwards:  # read only where it can matter: a backward of this window precedes it
                    o.zero_site = o.zero_site or _site() or "zero_grad"
            o.micro = o.fresh = o.unaveraged = 0
            o.live_sites.clear()
            o.unaveraged_sites.clear()
            o.last_bw = None
            o.since_zero = True

    def _zero_optimizer(self, optimizer, *args: Any, **kwargs: Any) -> None:
        if self.orders:  # the ids of its parameters, collected once per optimizer (and when a group is added)
            held, groups = self._held.get(id(optimizer)), len(optimizer.param_groups)
            if held is None or held[0]() is not optimizer or held[1] != groups:
                held = self._held[id(optimizer)] = (weakref.ref(optimizer), groups, {
                    id(p) for g in optimizer.param_groups for p in g["params"]})
            self._zeroed(held[2])

    def _zero_module(self, module, *args: Any, **kwargs: Any) -> None:
        if self.orders:
            self._zeroed({id(p) for p in module.parameters()})

    def _clip(self, kind: str, parameters: Any, result: Any, args: tuple, kwargs: dict) -> None:
        params = [parameters] if isinstance(parameters, torch.Tensor) else parameters
        ids = {id(p) for p in params}
        threshold = float(args[0] if args else kwargs.get("max_norm", kwargs.get("clip_value")))
        if not math.isfinite(threshold):
            return  # clip_grad_norm_(params, inf): a way to read the norm, not a clip
        for oid, o in self.orders.items():
            if not o.covers(ids):
                continue
            scaler = self._scaling(oid)
            o.clip = {"kind": kind, "threshold": float(threshold), "site": _site(), "had_grads":
                      any(p.grad is not None for p in params)}
            o.backward_after_clip = False
            if scaler is not None and kind == "norm" and isinstance(result, torch.Tensor):
                o.scaled_clips.add({**o.clip, "norm": result.detach(), "scale": scaler.detach().clone()})

    # ----- GradScaler ---------------------------------------------------------------------------------
    def _after_scale(self, result: Any, scaler, outputs: Any, *args: Any, **kwargs: Any) -> None:
        if not isinstance(outputs, torch.Tensor) or not scaler.is_enabled():
            return
        self._scaled = (id(result), outputs)
        self._scalers.setdefault(id(scaler), {"scaler": scaler, "scaled": False, "unscaled": set()})["scaled"] = True

    def _unscale(self, scaler, optimizer, *args: Any, **kwargs: Any) -> None:
        state = self._scalers.get(id(scaler))
        if state is not None:
            state["unscaled"].add(id(optimizer))

    def _scaler_step(self, scaler, optimizer, *args: Any, **kwargs: Any) -> None:
        self._attempts += 1
        self._track(optimizer)

    def _scaler_update(self, scaler, *args: Any, **kwargs: Any) -> None:
        state = self._scalers.get(id(scaler))
        if state is not None:
            state["scaled"], state["unscaled"] = False, set()

    def _scaling(self, optimizer_id: int) -> torch.Tensor | None:
        """The scale of a GradScaler that scaled a loss this iteration and has not unscaled this optimizer."""
        for state in self._scalers.values():
            if state["scaled"] and optimizer_id not in state["unscaled"]:
                return state["scaler"]._scale
        return None

    # ----- the step -----------------------------------------------------------------------------------
    def on_after_optimizer_step(self, optimizer) -> None:
        if self.broken:
            return
        try:
            o = self._track(optimizer)
            if o is not None:
                self._close_window(optimizer, o)
        except Exception:
            self.broken = True

    def _close_window(self, optimizer, o: _Order) -> None:
        o.steps += 1
        if o.window_backwards and not o.micro and o.zero_site:
            o.zeroed_steps.add(o.zero_site)
        elif o.wiped and o.micro and o.last_site in o.wiped_sites:  # the same backward line: a micro-batch loop
            o.reset_steps.add((o.wiped + o.micro, o.wipe_site))
        # one backward line, run once per micro-batch (two lines, like a GAN's real and fake halves, are two
        # losses summed on purpose)
        if o.fresh >= 2 and o.since_zero and o.unaveraged == o.fresh and len(o.unaveraged_sites) == 1:
            o.summed_steps.add((o.fresh, o.last_site))
            rates = [g.get("lr", 0.0) for g in optimizer.param_groups]  # read only for the finding's figures
            o.lr = max((float(r) for r in rates if not isinstance(r, torch.Tensor)), default=o.lr)
        if o.clip is not None and o.backward_after_clip and o.micro:
            o.late_clips.add({**o.clip, "step_norm": self.run.step_norm})
            if self.run.step_norm > o.clip["threshold"]:
                o.late_over = (o.late_over[0] + 1, max(o.late_over[1], self.run.step_norm))
        o.window_backwards = o.wiped = 0
        o.wipe_site = o.zero_site = ""
        if o.wiped_sites:
            o.wiped_sites = set()
        o.clip, o.backward_after_clip, o.since_zero = None, False, False

    def on_run_end(self) -> None:
        self.stop()
        for o in self.orders.values():  # the clip norms and scales, read once, off the hot path
            if o.scaled_clips.kept:
                try:
                    values = torch.stack([torch.stack([c["norm"].float().reshape(()), c["scale"].float().reshape(-1)[0]])
                                          for c in o.scaled_clips.kept]).tolist()
                    for c, (norm, scale) in zip(o.scaled_clips.kept, values):
                        c["norm"], c["scale"] = norm, scale
                except Exception:
                    o.scaled_clips = Tally()

    def describe(self) -> str:
        return (f"order of backward, zero_grad, clipping and step for {len(self.orders)} optimizer(s)"
                + (" (stopped: an unexpected object)" if self.broken else ""))
