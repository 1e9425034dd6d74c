"""How long the training step waits for its batch (EFF001): the time spent inside DataLoader's ``next()``
against the wall time from one training forward to the next, on the user's own run.

Host clock only (``time.perf_counter``): no device sync, no transfer. On CUDA the host's wait may overlap
work the device still has queued, so CUDA events are also recorded at each step's end and at the next
forward's start for a window of steps, and read once at the end of the run: the device's idle share.
"""
from __future__ import annotations

import sys
import time
from typing import Any

import torch

from nndoctor.probes.errors import user_call_site
from nndoctor.probes.watchers.base import Watcher, outside_nndoctor

WARMUP = 2  # the first steps build caches, autotune kernels and start workers: not typical
KEPT = 1000  # step samples kept (three floats each)
EVENT_STEPS = 64  # steps timed with CUDA events on a GPU


class Loader:
    """One DataLoader's iterators as the watcher saw them."""

    def __init__(self, it: Any, site: str) -> None:
        dataset = getattr(it, "_dataset", None)
        self.dataset = type(dataset).__name__ if dataset is not None else "?"
        self.num_workers = int(getattr(it, "_num_workers", 0) or 0)
        self.pin_memory = bool(getattr(it, "_pin_memory", False))
        self.site = site
        self.seconds = 0.0


class DataWaitWatcher(Watcher):
    name = "data-loader-wait"

    def __init__(self, run) -> None:
        super().__init__(run)
        self._patches = self.patches()
        self.samples: list[tuple[float, float]] = []  # per step: (seconds in next(loader), seconds forward to forward)
        self.loaders: dict[int, Loader] = {}  # id(dataset) -> its loader's facts
        self.device = "cpu"
        self.gpu_idle: list[tuple[float, float]] = []  # per timed step on CUDA: (idle ms, step ms)
        self._events: list[tuple[Any, Any, Any]] = []  # (this start, this step's end, next start) CUDA events
        self._waited = 0.0  # loader seconds since the current step's first forward
        self._start: float | None = None  # perf_counter at the current step's first training forward
        self._stepped = False  # an optimizer step ended since that forward
        self._t0 = 0.0
        self._start_event: Any = None
        self._end_event: Any = None
        self._steps_seen = 0

    def start(self) -> None:
        try:
            from torch.utils.data.dataloader import _BaseDataLoaderIter

            self._patches.method(_BaseDataLoaderIter, "__next__", self._before_next, self._after_next)
        except Exception:
            self.stop()
            self.broken = True

    def stop(self) -> None:
        self._patches.undo()

    # ----- the loader ---------------------------------------------------------------------------------
    def _before_next(self, it: Any, *args: Any, **kwargs: Any) -> None:
        self._t0 = time.perf_counter()

    def _after_next(self, result: Any, it: Any, *args: Any, **kwargs: Any) -> None:
        took = time.perf_counter() - self._t0
        self._waited += took
        key = id(getattr(it, "_dataset", it))
        loader = self.loaders.get(key)
        if loader is None and len(self.loaders) < 16:
            loader = self.loaders[key] = Loader(it, user_call_site(outside_nndoctor(sys._getframe(1)))[0])
        if loader is not None:
            loader.seconds += took

    # ----- the step -----------------------------------------------------------------------------------
    def on_forward(self, module, inputs, kwargs, training_step: bool) -> None:
        if not training_step or self.broken or (self._start is not None and not self._stepped):
            return  # an evaluation forward, or a later micro-batch of the same step
        now = time.perf_counter()
        if self._start is not None and len(self.samples) < KEPT:
            self._steps_seen += 1
            if self._steps_seen > WARMUP:
                self.samples.append((self._waited, now - self._start))
        if self._start is None:
            params = self.run.root(module).params
            self.device = params[0].device.type if params else "cpu"
        if self.device == "cuda":
            self._event_at_start()
        self._start, self._stepped, self._waited = now, False, 0.0

    def on_after_optimizer_step(self, optimizer) -> None:
        if self._start is None or self._stepped or self.broken:
            return
        self._stepped = True
        if self._start_event is not None:
            self._end_event = _record()

    def on_loss_value(self, value: float) -> None:
        """A framework whose optimizer torch cannot see (Keras) reported the step's loss: the step has ended."""
        self.on_after_optimizer_step(None)

    def _event_at_start(self) -> None:
        """On CUDA (the caller asks): CUDA events around the sampled steps."""
        if self._start_event is not None and self._end_event is not None:
            event = _record()
            self._events.append((self._start_event, self._end_event, event))
        timing = WARMUP <= self._steps_seen < WARMUP + EVENT_STEPS
        self._start_event = _record() if timing else None
        self._end_event = None

    def on_run_end(self) -> None:
        self.stop()
        if not self._events:
            return
        try:  # the run is over: waiting for the device once here costs the user's loop nothing
            self._events[-1][2].synchronize()
            self.gpu_idle = [(end.elapsed_time(nxt), start.elapsed_time(nxt)) for start, end, nxt in self._events]
        except Exception:
            self.gpu_idle = []
        self._events = []

    def describe(self) -> str:
        return f"time waiting on the data loader, over {len(self.samples)} steps"


def _record() -> Any:
    event = torch.cuda.Event(enable_timing=True)
    event.record()
    return event
