"""Memory of one training step traced with fake tensors: nothing is allocated, any batch size is instant.

``FakeStep`` turns a model copy into fake tensors (``torch._subclasses.fake_tensor.FakeTensorMode``:
shapes, dtypes and devices without data), builds the optimizer on the fake parameters and traces
steps at any batch size with ``measure_step``; ``LiveBytes`` stands in for the allocator: a dispatch mode
that adds the bytes of every new storage an op creates and subtracts them when the storage dies
(a weakref finalizer), so its peak is the step's transient peak, optimizer update included.

What a trace cannot see: memory outside tensors (a CUDA context, cuBLAS/cuDNN workspaces) and the
caching allocator's fragmentation. For a CUDA target these are a stated margin (``cuda_margin``),
and every allocation is rounded up to the allocator's 512-byte blocks. On a machine without CUDA the
step is traced with the CPU's kernels: the shapes autograd saves do not depend on the device; a fake
CUDA tensor cannot run backward there (its gradient accumulator asks for a CUDA device guard).
"""
from __future__ import annotations

import weakref
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Callable, Iterator

import torch
from torch import nn
from torch._subclasses.fake_tensor import FakeTensorMode
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

from nndoctor import data as D
from nndoctor.probes.memory import MiB, StepMemory, forward_saved_bytes, measure_step

CUDA_BLOCK = 512  # the CUDA caching allocator rounds every allocation up to this
CUDA_CONTEXT = 400 * MiB  # the CUDA context and kernels' code: 300-500 MiB depending on the GPU and libraries
CUDA_WORKSPACES = 128 * MiB  # cuBLAS workspaces per stream and cuDNN's convolution workspace (algorithm-dependent)
CUDA_FRAGMENTATION = 0.05  # cached but unusable blocks, as a share of the peak


@dataclass(frozen=True)
class Margin:
    """Bytes a fake trace cannot see: ``fixed + fraction * peak``."""

    fixed: float = 0.0
    fraction: float = 0.0
    text: str = ""

    def of(self, peak: float) -> float:
        return self.fixed + self.fraction * peak

    def usable(self, budget: float) -> float:
        """The largest traced peak that still fits ``budget`` with the margin added."""
        return max(0.0, (budget - self.fixed) / (1 + self.fraction))


def cuda_margin(device: torch.device, context_in_budget: bool = True) -> Margin:
    """The margin for a device: none on CPU; on CUDA its context (when the budget is the whole device),
    library workspaces and fragmentation."""
    if torch.device(device).type != "cuda":
        return Margin()
    fixed = CUDA_WORKSPACES + (CUDA_CONTEXT if context_in_budget else 0)
    parts = ([f"CUDA context ~{CUDA_CONTEXT // MiB} MiB"] if context_in_budget else []) + [
        f"cuBLAS/cuDNN workspaces ~{CUDA_WORKSPACES // MiB} MiB",
        f"allocator fragmentation ~{CUDA_FRAGMENTATION:.0%} of the peak"]
    return Margin(fixed, CUDA_FRAGMENTATION, ", ".join(parts))


def _storage_id(t: torch.Tensor) -> int | None:
    try:
        return t.untyped_storage()._cdata
    except (RuntimeError, NotImplementedError, TypeError):  # sparse or nested tensors: no single storage
        return None


class LiveBytes(TorchDispatchMode):
    """Bytes of the storages created since it was entered and still alive; the peak per phase.

    Same interface as ``AllocatorPeaks``: ``with LiveBytes() as live: with live.phase("step"): ...``, then
    ``live.peaks["step"]``. A storage an op returns that none of its inputs holds is new (views and
    in-place results are not); each is rounded up to ``block`` bytes.
    """

    def __init__(self, block: int = 1):
        super().__init__()
        self.block = block
        self.live = 0
        self.peaks: dict[str, int] = {}
        self._phase: str | None = None
        self._alive: dict[int, int] = {}
        self._finalizers: list[weakref.finalize] = []

    def __exit__(self, *exc: Any) -> Any:
        for finalizer in self._finalizers:  # storages that outlive the trace (gradients, state) stay uncounted
            finalizer.detach()
        self._finalizers.clear()
        return super().__exit__(*exc)

    @contextmanager
    def phase(self, name: str) -> Iterator[None]:
        self._phase = name
        self.peaks[name] = self.live
        try:
            yield
        finally:
            self._phase = None

    def __torch_dispatch__(self, func: Any, types: Any, args: tuple = (), kwargs: dict | None = None) -> Any:
        kwargs = kwargs or {}
        held = {_storage_id(t) for t in tree_flatten((args, kwargs))[0] if isinstance(t, torch.Tensor)}
        out = func(*args, **kwargs)
        for t in tree_flatten(out)[0]:
            if isinstance(t, torch.Tensor):
                self._count(t, held)
        return out

    def _count(self, t: torch.Tensor, held: set) -> None:
        key = _storage_id(t)
        if key is None or key in held or key in self._alive:
            return
        storage = t.untyped_storage()
        size = -(-storage.nbytes() // self.block) * self.block
        self._alive[key] = size
        self.live += size
        if self._phase is not None:
            self.peaks[self._phase] = max(self.peaks[self._phase], self.live)
        self._finalizers.append(weakref.finalize(storage, self._free, key))

    def _free(self, key: int) -> None:
        self.live -= self._alive.pop(key, 0)


class FakeStep:
    """A model copy and its optimizer as fake tensors, on which training steps are traced at any batch size.

    ``model`` is a copy (its parameters and buffers are replaced in place); ``make_optimizer(model)``
    builds the user's optimizer on the fake parameters. ``device`` is the target: steps are traced for it.
    """

    def __init__(self, model: nn.Module, make_optimizer: Callable[[nn.Module], torch.optim.Optimizer],
                 device: torch.device):
        self.target = torch.device(device)
        present = self.target.type != "cuda" or torch.cuda.is_available()
        self.traced_on = self.target if present else torch.device("cpu")
        self.block = CUDA_BLOCK if self.target.type == "cuda" else 1
        self.mode = FakeTensorMode(allow_non_fake_inputs=True)  # plain tensor attributes become fake on use
        self.model = model
        with self.mode:
            _to_fake(model, self.mode, self.traced_on)
            self.optimizer = make_optimizer(model)

    @property
    def kernels(self) -> str:
        """Whose kernels the trace ran: the target's, or the CPU's standing in for CUDA."""
        return "" if self.traced_on == self.target else "cpu kernels standing in for cuda"

    def batch(self, batch: Any, size: int, full: int) -> Any:
        """A fake batch of ``size`` samples shaped like ``batch`` (tensors of ``full`` rows are resized)."""
        with self.mode:
            def fake(t: Any) -> Any:
                if not isinstance(t, torch.Tensor):
                    return t
                if t.ndim and t.shape[0] == full:
                    return torch.empty((size, *t.shape[1:]), dtype=t.dtype, device=self.traced_on,
                                       requires_grad=t.requires_grad)
                return self.mode.from_tensor(t).to(self.traced_on)

            return D.map_tensors(fake, batch)

    def trace(self, batch: Any, size: int, full: int, loss_of: Callable[[nn.Module, Any], Any],
              outside: str = "loss") -> StepMemory:
        """One training step at ``size`` samples, traced: where its bytes go and its peak (``measure_step``)."""
        fake = self.batch(batch, size, full)
        with self.mode:
            return measure_step(self.model, self.optimizer, fake, loss_of, batch_size=size, device=self.traced_on,
                                outside=outside, peaks=LiveBytes(self.block))

    def saved_bytes(self, batch: Any, size: int, full: int, loss_of: Callable[[nn.Module, Any], Any]) -> int:
        """Bytes saved for backward by one traced forward pass and loss (e.g. under autocast)."""
        fake = self.batch(batch, size, full)
        with self.mode:
            return forward_saved_bytes(self.model, fake, loss_of)


def _to_fake(model: nn.Module, mode: FakeTensorMode, device: torch.device) -> None:
    """Replace the parameters and buffers of ``model`` by fake ones on ``device`` (tied ones stay tied)."""
    made: dict[int, Any] = {}
    for module in model.modules():
        for name, p in list(module._parameters.items()):
            if p is not None:
                if id(p) not in made:
                    made[id(p)] = nn.Parameter(mode.from_tensor(p.detach()).to(device), requires_grad=p.requires_grad)
                module._parameters[name] = made[id(p)]
        for name, b in list(module._buffers.items()):
            if b is not None:
                if id(b) not in made:
                    made[id(b)] = mode.from_tensor(b).to(device)
                module._buffers[name] = made[id(b)]
