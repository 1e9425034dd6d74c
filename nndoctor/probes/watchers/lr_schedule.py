"""The learning rate over the run and who changed it. ``LRScheduler.__init__`` and ``.step`` (and
``ReduceLROnPlateau.step``, ``SequentialLR``/``ChainedScheduler``'s own) are patched for the Monitor's
lifetime: each scheduler's class, optimizer, creation line, the line of its first ``step()`` and its step
count; at every optimizer step the LR that step uses (max over param groups, read from the groups: no
device transfer for float LRs). Rarely-called functions only; the patches call the originals unchanged.

Shared on ``run.lr_schedule`` (this watcher) for the curve judge, which names the schedule as a cause."""
from __future__ import annotations

import sys
from typing import Any

import torch

from nndoctor.probes.errors import user_call_site
from nndoctor.probes.sharded import local
from nndoctor.probes.watchers.base import Watcher, outside_nndoctor


def _site() -> str:
    return user_call_site(outside_nndoctor(sys._getframe(1)))[0]


def group_lr(optimizer: torch.optim.Optimizer) -> float | None:
    """Max LR over the param groups; None when a tensor LR lives on an accelerator (no sync for it)."""
    best = None
    for g in optimizer.param_groups:
        r = g.get("lr")
        if isinstance(r, torch.Tensor):
            if r.device.type != "cpu":
                return None
            r = r.item()
        if isinstance(r, (int, float)):
            best = float(r) if best is None else max(best, float(r))
    return best


_SAMPLED = frozenset((8, 32, 128, 512, 2048, 8192))


class Schedule:
    """One scheduler as the user built it."""

    def __init__(self, scheduler: Any, site: str, optimizer_steps: int) -> None:
        self.kind = type(scheduler).__name__
        self.site = site
        self.optimizer = getattr(scheduler, "optimizer", None)
        self.optimizer_id = id(self.optimizer)
        self.created_at = optimizer_steps  # this optimizer's steps when it was built
        self.steps = 0  # the user's step() calls (not the one __init__ makes)
        self.step_site = ""
        self.early_site = ""  # a step() before this optimizer's first step
        self.base_lrs = [float(x) for x in getattr(scheduler, "base_lrs", []) or []]
        self.step_size = getattr(scheduler, "step_size", None)
        milestones = getattr(scheduler, "milestones", None)
        self.milestones = sorted(milestones) if milestones else None
        self.plateau = "Plateau" in self.kind


class LRScheduleWatcher(Watcher):
    name = "lr-schedule"

    def __init__(self, run) -> None:
        super().__init__(run)
        run.lr_schedule = self  # read by the curve judge (checks/live_curve.py)
        self.schedules: list[Schedule] = []
        self._by_id: dict[int, Schedule] = {}
        self.lrs: list[float] = []  # the LR each optimizer step used, all optimizers in step order
        self.lr_optimizer: list[int] = []  # id of the optimizer of each entry of lrs
        self.tried: set[int] = set()  # optimizers a GradScaler.step was called for
        self._depth = 0  # a SequentialLR steps its children: only the outermost call counts
        self._init_depth = 0
        self._before: tuple[int, int, list[torch.Tensor], list[torch.Tensor]] | None = None  # (optimizer, step, ...)
        self._updates: list[tuple[int, torch.Tensor]] = []  # (step, [update norm, weight norm]) on device
        self.update_ratios: list[tuple[int, float]] = []  # (step, |update| / |weights|), after the run
        self._patches = self.patches()


    def start(self) -> None:
        try:
            from torch.optim import lr_scheduler as L

            # every scheduler class's own __init__ (ReduceLROnPlateau's does not call its base's; SequentialLR's
            # steps its children) and step: the depth counters book each user call once
            kinds = [c for c in vars(L).values() if isinstance(c, type) and c.__module__ == L.__name__
                     and issubclass(c, (L.LRScheduler, L.ReduceLROnPlateau))]
            for owner in kinds:
                if "__init__" in owner.__dict__:
                    self._wrap_init(owner)
                if "step" in owner.__dict__:
                    self._wrap_step(owner)
            from torch.amp.grad_scaler import GradScaler

            # a step a GradScaler skipped (Inf gradients) was still the optimizer's step in the loop's order
            self._patches.method(GradScaler, "step", self._scaler_step)
        except Exception:
            self.stop()
            self.broken = True

    def stop(self) -> None:
        self._patches.undo()

    def _wrap_init(self, owner: type) -> None:
        original = owner.__dict__["__init__"]
        created = self._patches.guard(self._created)
        watcher = self

        def __init__(scheduler: Any, *args: Any, **kwargs: Any) -> None:
            watcher._init_depth += 1
            try:
                original(scheduler, *args, **kwargs)
            finally:
                watcher._init_depth -= 1
            if watcher._init_depth == 0:  # a subclass's __init__ ends after its base's: book it once, at the end
                created(scheduler)

        __init__.__wrapped__ = original  # type: ignore[attr-defined]
        self._patches.replace(owner, "__init__", __init__)

    def _wrap_step(self, owner: type) -> None:
        original = owner.__dict__["step"]
        stepped = self._patches.guard(self._stepped)
        watcher = self

        def step(scheduler: Any, *args: Any, **kwargs: Any) -> Any:
            outer = watcher._depth == 0 and watcher._init_depth == 0
            watcher._depth += 1
            try:
                return original(scheduler, *args, **kwargs)
            finally:
                watcher._depth -= 1
                if outer:
                    stepped(scheduler)

        step.__wrapped__, step.__name__, step.__doc__ = original, "step", original.__doc__  # type: ignore[attr-defined]
        self._patches.replace(owner, "step", step)

    def _scaler_step(self, scaler: Any, optimizer: Any, *args: Any, **kwargs: Any) -> None:
        self.tried.add(id(optimizer))

    def _created(self, scheduler: Any) -> None:
        if id(scheduler) in self._by_id or len(self.schedules) >= 64:
            return
        s = Schedule(scheduler, _site(), self.run.steps_of.get(id(getattr(scheduler, "optimizer", None)), 0))
        self._by_id[id(scheduler)] = s
        self.schedules.append(s)

    def _stepped(self, scheduler: Any) -> None:
        s = self._by_id.get(id(scheduler))
        if s is None:
            self._created(scheduler)  # built before the Monitor started
            s = self._by_id.get(id(scheduler))
            if s is None:
                return
            s.created_at = -1  # unknown: not judged for stepping early
        s.steps += 1
        if not s.step_site:
            s.step_site = _site()
        if s.steps == 1 and s.created_at >= 0 and self.run.steps_of.get(s.optimizer_id, 0) == s.created_at \
                and s.optimizer_id not in self.tried:
            s.early_site = s.step_site or "scheduler.step()"

    def on_before_optimizer_step(self, optimizer) -> None:
        if self.broken:
            return
        try:
            groups = optimizer.param_groups
            lr = groups[0].get("lr") if len(groups) == 1 else None  # the usual case, read without a call
            if type(lr) is not float:
                lr = group_lr(optimizer)
            if lr is not None and len(self.lrs) < 1_000_000:
                self.lrs.append(lr)
                self.lr_optimizer.append(id(optimizer))
            step = self.run.steps_of.get(id(optimizer), 0) + 1  # the step about to run
            if step in _SAMPLED:
                self._snapshot(optimizer, step)
        except Exception:
            self.broken = True

    def _snapshot(self, optimizer, step: int) -> None:
        """On a few sampled steps (the 8th, 32nd, 128th, ..., at most 6, models up to 20M parameters), a copy
        of the weights before the step: the step's update size, measured, not inferred from the optimizer."""
        if len(self._updates) >= len(_SAMPLED) or self.run.replaying:
            return
        params = [p for p in self.run.trainable_params(optimizer) if p.grad is not None]
        if params and sum(p.numel() for p in params) <= 20_000_000:
            self._before = (id(optimizer), step, params, [local(p.detach()).clone() for p in params])  # shards: no collective

    def on_after_optimizer_step(self, optimizer) -> None:
        if self._before is not None and self._before[0] == id(optimizer):  # the copy is freed at once
            self._measure_update()

    def _measure_update(self) -> None:
        _, step, params, old = self._before
        self._before = None
        try:
            moved = torch._foreach_sub([local(p.detach()) for p in params], old)
            norms = torch.stack([torch.linalg.vector_norm(torch.stack(torch._foreach_norm(moved))),
                                 torch.linalg.vector_norm(torch.stack(torch._foreach_norm(old)))])
            self._updates.append((step, norms))  # read once, at the end
        except Exception:
            pass

    def on_run_end(self) -> None:
        self.stop()
        self._before = None
        try:
            self.update_ratios = [(k, u / max(w, 1e-12)) for k, (u, w) in
                                  ((k, t.float().tolist()) for k, t in self._updates)]
        except Exception:
            self.update_ratios = []

    # ----- readings for the judges -------------------------------------------------------------------
    def curve(self) -> list[float]:
        """The LR per step of the optimizer that owns the loss curve (the first one seen, with one optimizer)."""
        if not self.lr_optimizer:
            return []
        owner = self.lr_optimizer[0]
        return [lr for lr, o in zip(self.lrs, self.lr_optimizer) if o == owner]

    def schedule_of(self, optimizer_id: int | None = None) -> Schedule | None:
        """The (last built) scheduler of this optimizer, the loss curve's by default."""
        if optimizer_id is None and self.lr_optimizer:
            optimizer_id = self.lr_optimizer[0]
        found = [s for s in self.schedules if s.optimizer_id == optimizer_id and s.steps]
        return found[-1] if found else None

    def describe(self) -> str:
        kinds = ", ".join(sorted({s.kind for s in self.schedules})) or "no scheduler"
        return (f"learning rate at {len(self.lrs)} optimizer steps; {kinds}"
                + (" (stopped: an unexpected object)" if self.broken else ""))
