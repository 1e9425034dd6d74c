"""Memory of one training step: where the bytes go, and the allocator's peak. Only measures.

``measure_step`` runs one ordinary step (zero_grad, forward, loss, backward, optimizer step) on the
model and optimizer it is given (copies) and returns a ``StepMemory``:

- parameters, buffers, gradients, optimizer state and the batch: sizes of their storages;
- activations saved for backward, per module: every tensor autograd saves passes through
  ``saved_tensors_hooks`` and is charged to the module running at that moment (a module stack kept by
  forward pre/post hooks). Storages are counted once (views and tensors shared between modules are
  not double counted); a saved parameter or input stays a parameter or input;
- the allocator's peak above what was resident before the step, separately for forward+backward and
  for the optimizer step: on CUDA from ``torch.cuda.max_memory_allocated``, on CPU from the
  profiler's allocation events (the CPU allocator keeps no statistics of its own).

The steady-state peak of a step (optimizer state already there) follows from these; memory grows
linearly with the batch, so two batch sizes give the peak at any batch size (``PeakModel``).
"""
from __future__ import annotations

import gc
import os
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator

import torch
from torch import nn
from torch._subclasses.fake_tensor import FakeTensor

from nndoctor.data import tensors_in

MiB = 2**20


def _storage_key(t: torch.Tensor) -> tuple[Any, int, int] | None:
    """(device, address, bytes) of the memory block behind ``t``; None for tensors without one."""
    try:
        storage = t.untyped_storage()
        if isinstance(t, FakeTensor):  # no data behind a fake tensor: its storage object is its identity
            return (t.device, storage._cdata, storage.nbytes())
        return (t.device, storage.data_ptr(), storage.nbytes())
    except (RuntimeError, NotImplementedError, TypeError):  # sparse, meta-like or wrapper tensors
        return None


def storage_bytes(tensors: Any) -> int:
    """Bytes of the distinct storages behind ``tensors`` (a view and its base count once)."""
    seen = {}
    for t in tensors:
        key = _storage_key(t) if isinstance(t, torch.Tensor) else None
        if key is not None:
            seen[key[:2]] = key[2]
    return sum(seen.values())


class SavedActivations:
    """Bytes autograd saves for backward, charged to the innermost module running when they are saved.

    ``with SavedActivations(model, exclude=[...]) as saved: loss = ...`` then ``saved.by_module``.
    Storages of ``exclude`` (parameters, buffers, the batch) are not activations and are skipped.
    """

    def __init__(self, model: nn.Module, exclude: list[torch.Tensor], root: str = "model", outside: str = "loss"):
        self.model = model
        self.root = root
        self.outside = outside
        self.by_module: dict[str, int] = {}  # "model.features.0" -> bytes saved while it ran
        self.module_inputs: dict[str, int] = {}  # bytes of each module's inputs, beyond parameters and the batch
        self.order: list[str] = []  # module paths in the order of their first call
        self._excluded = {key[:2] for key in map(_storage_key, exclude) if key is not None}
        self._known = set(self._excluded)  # grows with every storage counted
        self._stack: list[str] = []
        self._handles: list[Any] = []
        self._saved_hooks = torch.autograd.graph.saved_tensors_hooks(self._pack, lambda t: t)

    def __enter__(self) -> "SavedActivations":
        for path, module in self.model.named_modules():
            name = f"{self.root}.{path}" if path else self.root
            self._handles.append(module.register_forward_pre_hook(self._push(name), with_kwargs=True))
            self._handles.append(module.register_forward_hook(self._pop(name), always_call=True))
        self._saved_hooks.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._saved_hooks.__exit__(*exc)
        for handle in self._handles:
            handle.remove()
        self._handles.clear()
        self._stack.clear()

    @property
    def total(self) -> int:
        return sum(self.by_module.values())

    def _push(self, name: str) -> Callable[..., None]:
        def hook(module: nn.Module, args: tuple, kwargs: dict) -> None:
            if name not in self.module_inputs:
                self.order.append(name)
            fresh = [t for t in tensors_in((args, kwargs))
                     if (key := _storage_key(t)) is None or key[:2] not in self._excluded]
            self.module_inputs[name] = self.module_inputs.get(name, 0) + storage_bytes(fresh)
            self._stack.append(name)

        return hook

    def _pop(self, name: str) -> Callable[..., None]:
        def hook(module: nn.Module, args: tuple, output: Any) -> None:
            if self._stack and self._stack[-1] == name:
                self._stack.pop()

        return hook

    def _pack(self, t: torch.Tensor) -> torch.Tensor:
        key = _storage_key(t)
        if key is not None and key[:2] not in self._known:
            self._known.add(key[:2])
            owner = self._stack[-1] if self._stack else self.outside
            self.by_module[owner] = self.by_module.get(owner, 0) + key[2]
        return t


class AllocatorPeaks:
    """Peak bytes allocated on ``device`` per phase, above what was allocated when this was entered.

    ``with AllocatorPeaks(device) as peaks: with peaks.phase("step"): ...`` then ``peaks.peaks["step"]``.
    """

    def __init__(self, device: torch.device):
        self.device = torch.device(device)
        self.peaks: dict[str, int] = {}
        self._cuda = self.device.type == "cuda"
        self._profiler: Any = None
        self._gc_was_enabled = False
        self._base = 0

    def __enter__(self) -> "AllocatorPeaks":
        if self._cuda:
            self._base = torch.cuda.memory_allocated(self.device)
            return self
        from torch.profiler import ProfilerActivity, profile

        # The profiler sees no free of a block allocated before it started: keep the garbage collector
        # from freeing old tensors while it runs, or the live bytes would drift upwards.
        self._gc_was_enabled = gc.isenabled()
        gc.disable()
        self._profiler = profile(activities=[ProfilerActivity.CPU], profile_memory=True)
        # Kineto prints a line on every start unless its log level is raised (read once, at its first start).
        quiet = "KINETO_LOG_LEVEL" not in os.environ
        if quiet:
            os.environ["KINETO_LOG_LEVEL"] = "6"
        try:
            self._profiler.__enter__()
        except BaseException:
            self._restore_gc()
            raise
        finally:
            if quiet:
                del os.environ["KINETO_LOG_LEVEL"]
        return self

    def _restore_gc(self) -> None:
        if self._gc_was_enabled:
            gc.enable()

    def __exit__(self, *exc: Any) -> None:
        if self._profiler is None:
            return
        self._profiler.__exit__(*exc)
        self._restore_gc()
        events = sorted(self._profiler.profiler.kineto_results.events(), key=lambda e: e.start_ns())
        spans = {e.name()[len("nndoctor."):]: (e.start_ns(), e.end_ns()) for e in events
                 if e.name().startswith("nndoctor.")}
        live = 0  # bytes allocated since the profiler started
        for e in events:
            if e.name() != "[memory]" or e.device_type() != torch.autograd.DeviceType.CPU:
                continue
            live += e.nbytes()
            for name, (start, end) in spans.items():
                if start <= e.start_ns() <= end:
                    self.peaks[name] = max(self.peaks.get(name, 0), live)
        for name in spans:
            self.peaks.setdefault(name, 0)

    @contextmanager
    def phase(self, name: str) -> Iterator[None]:
        if self._cuda:
            torch.cuda.reset_peak_memory_stats(self.device)
            yield
            self.peaks[name] = torch.cuda.max_memory_allocated(self.device) - self._base
            return
        with torch.profiler.record_function(f"nndoctor.{name}"):
            yield


@dataclass
class StepMemory:
    """Bytes of one measured training step at one batch size."""

    batch_size: int
    parameters: int  # every parameter, frozen ones included
    buffers: int
    gradients: int
    optimizer_state: int  # after the step
    state_created: int  # optimizer state this step allocated (all of it on a first step)
    inputs: int  # the batch
    activations: dict[str, int]  # saved for backward, per module path ("model.features.0"; "loss" outside)
    module_inputs: dict[str, int]  # bytes each module was called with, beyond parameters and the batch
    order: list[str]  # module paths in call order
    forward_backward_peak: int  # allocator peak during forward+backward above the resident bytes
    step_peak: int  # allocator peak during optimizer.step above the resident bytes before the forward
    optimizer: str = ""
    state_by_parameter: dict[str, int] = field(default_factory=dict)  # parameter name -> optimizer state bytes
    grad_by_parameter: dict[str, int] = field(default_factory=dict)  # parameter name -> gradient bytes

    @property
    def activation_bytes(self) -> int:
        return sum(self.activations.values())

    @property
    def resident(self) -> int:
        """What stays allocated across steps, plus the batch."""
        return self.parameters + self.buffers + self.optimizer_state + self.inputs

    @property
    def transient(self) -> int:
        """Forward/backward bytes beyond the saved activations (gradients of activations, workspaces)."""
        return max(0, self.forward_backward_peak - self.activation_bytes)

    @property
    def step_transient(self) -> int:
        """Optimizer-step bytes beyond the gradients (temporaries of the update)."""
        return max(0, self.step_peak - self.state_created - self.gradients)

    @property
    def peak(self) -> int:
        """The peak of a steady-state step (optimizer state already allocated) at this batch size."""
        return self.resident + max(self.forward_backward_peak, self.step_peak - self.state_created)


def measure_step(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    batch: Any,
    loss_of: Callable[[nn.Module, Any], Any],
    *,
    batch_size: int,
    device: torch.device,
    outside: str = "loss",
    peaks: Any = None,
) -> StepMemory:
    """Run one training step of ``model`` (a copy) on ``batch`` and measure where its memory goes.

    ``loss_of(model, batch)`` returns the scalar loss (or a tuple whose first item is the loss).
    ``peaks`` replaces the allocator's reading (an object like ``AllocatorPeaks``: a context manager with
    ``phase(name)`` and ``peaks``), e.g. the live bytes of a fake-tensor trace.
    Exceptions (a real out-of-memory included) propagate; every hook is removed either way.
    """
    optimizer.zero_grad(set_to_none=True)
    params = list(model.parameters())
    buffers = list(model.buffers())
    batch_tensors = tensors_in(batch)
    state_before = _state_bytes(optimizer)
    model.train()
    with (peaks if peaks is not None else AllocatorPeaks(device)) as allocator:
        with allocator.phase("forward_backward"):
            with SavedActivations(model, exclude=params + buffers + batch_tensors, outside=outside) as saved:
                loss = loss_of(model, batch)
            loss = loss[0] if isinstance(loss, tuple) else loss
            loss.backward()
            del loss
        with allocator.phase("step"):
            optimizer.step()
    names = {id(p): name for name, p in model.named_parameters()}
    state = _state_bytes(optimizer)
    return StepMemory(
        batch_size=batch_size,
        parameters=storage_bytes(params),
        buffers=storage_bytes(buffers),
        gradients=storage_bytes(p.grad for p in params if p.grad is not None),
        optimizer_state=state,
        state_created=max(0, state - state_before),
        inputs=storage_bytes(batch_tensors),
        activations=saved.by_module,
        module_inputs=saved.module_inputs,
        order=saved.order,
        forward_backward_peak=allocator.peaks["forward_backward"],
        step_peak=allocator.peaks["step"],
        optimizer=type(optimizer).__name__,
        state_by_parameter={names.get(id(p), "(not in the model)"): storage_bytes(_state_tensors(s))
                            for p, s in optimizer.state.items()},
        grad_by_parameter={names[id(p)]: storage_bytes([p.grad]) for p in params if p.grad is not None},
    )


def _state_tensors(state: dict[str, Any]) -> list[torch.Tensor]:
    return [v for v in state.values() if isinstance(v, torch.Tensor)]


def _state_bytes(optimizer: torch.optim.Optimizer) -> int:
    return storage_bytes(t for s in optimizer.state.values() for t in _state_tensors(s))


def forward_saved_bytes(model: nn.Module, batch: Any, loss_of: Callable[[nn.Module, Any], Any]) -> int:
    """Bytes autograd saves for backward during one forward pass and loss (e.g. under autocast); no backward."""
    exclude = list(model.parameters()) + list(model.buffers()) + tensors_in(batch)
    model.train()
    with SavedActivations(model, exclude=exclude) as saved:
        loss_of(model, batch)  # the graph is dropped on return
    return saved.total


@dataclass
class PeakModel:
    """Memory as a linear function of the batch size, fitted on two measured steps.

    Every batch-dependent quantity (the batch, each module's activations, the transients) is exact
    at the two measured sizes and linear in between and beyond: activations scale with the batch.
    Given one step twice (only one size could run), they are taken as proportional to the batch.
    """

    small: StepMemory
    large: StepMemory

    def _at(self, a: float, b: float, batch_size: float) -> float:
        n1, n2 = self.small.batch_size, self.large.batch_size
        if n1 == n2:
            return b * batch_size / n2
        return b + (b - a) / (n2 - n1) * (batch_size - n2)

    def _per_module(self, small: dict[str, int], large: dict[str, int], batch_size: float) -> dict[str, float]:
        return {p: max(0.0, self._at(small.get(p, 0), large.get(p, 0), batch_size)) for p in set(small) | set(large)}

    def activations(self, batch_size: float) -> dict[str, float]:
        return self._per_module(self.small.activations, self.large.activations, batch_size)

    def module_inputs(self, batch_size: float) -> dict[str, float]:
        return self._per_module(self.small.module_inputs, self.large.module_inputs, batch_size)

    def parts(self, batch_size: float) -> dict[str, float]:
        """The breakdown at ``batch_size``: fixed parts as measured, batch parts extrapolated."""
        s, l = self.small, self.large
        return {
            "parameters": l.parameters,
            "buffers": l.buffers,
            "gradients": l.gradients,
            "optimizer_state": l.optimizer_state,
            "inputs": max(0.0, self._at(s.inputs, l.inputs, batch_size)),
            "activations": sum(self.activations(batch_size).values()),
            "transient": max(0.0, self._at(s.transient, l.transient, batch_size)),
            "step_transient": max(0.0, self._at(s.step_transient, l.step_transient, batch_size)),
        }

    def peak(self, batch_size: float, **changes: float) -> float:
        """Estimated steady-state peak at ``batch_size``; ``changes`` replace parts (e.g. optimizer_state=0)."""
        p = {**self.parts(batch_size), **changes}
        return peak_of(p)

    @property
    def bytes_per_sample(self) -> float:
        return self.peak(self.large.batch_size + 1) - self.peak(self.large.batch_size)

    def largest_batch(self, budget: float, limit: int = 1 << 20) -> int:
        """The largest batch size whose estimated peak is within ``budget`` (0 if not even 1; ``limit`` caps it)."""
        if self.peak(1) > budget:
            return 0
        lo, hi = 1, 2
        while hi < limit and self.peak(hi) <= budget:
            lo, hi = hi, hi * 2
        if hi >= limit and self.peak(limit) <= budget:
            return limit
        while hi - lo > 1:  # peak is non-decreasing in the batch size: bisect
            mid = (lo + hi) // 2
            lo, hi = (mid, hi) if self.peak(mid) <= budget else (lo, mid)
        return lo


def peak_of(parts: dict[str, float]) -> float:
    """Peak of a steady-state step from its parts: the larger of the forward/backward and the update phase."""
    resident = parts["parameters"] + parts["buffers"] + parts["optimizer_state"] + parts["inputs"]
    forward_backward = parts["activations"] + parts["transient"]
    update = parts["gradients"] + parts["step_transient"]
    return resident + max(forward_backward, update)
