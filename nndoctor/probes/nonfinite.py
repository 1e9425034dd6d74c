"""Where the first NaN/Inf of a training step is born: a forward op, or a backward node.

Two instruments, cheap first:
  - ``guarded_steps`` runs ordinary training steps and reads only the loss and the total gradient
    norm, in one host transfer per step; it says at which step and in which phase (forward or
    backward) something first became non-finite.
  - ``FirstNonFinite`` replays that one step with fine instrumentation: a ``TorchFunctionMode`` checks
    every op's outputs (one host sync per op; for the replay only) and keeps the first op that made NaN
    out of NaN-free inputs, or Inf out of finite inputs; ``watch_backward`` hooks every node of the
    autograd graph and keeps the first node that made a non-finite gradient out of finite incoming
    gradients, with the forward op (module, line, input values) that created it.
Inf written on purpose (``masked_fill(mask, -inf)``, ``torch.full(..., -inf)``) is not a birth; the
NaN a fully masked softmax makes of it is. Only measures; the verdicts are in checks/numerics.py.
"""
from __future__ import annotations

import math
import sys
import weakref
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator

import torch
from torch import nn

from nndoctor.data import tensors_in
from nndoctor.probes.op_trace import Site, current_site
from nndoctor.probes.trace import ModuleAwareMode

# Ops that write infinities on purpose (masks, padding values) or return uninitialised memory.
_WRITES_INF = {"full", "full_like", "new_full", "fill_", "fill", "masked_fill", "masked_fill_", "where",
               "__setitem__", "tensor", "as_tensor", "masked_scatter", "masked_scatter_", "index_fill", "index_fill_"}
_UNINITIALISED = {"empty", "empty_like", "new_empty", "empty_strided"}


# ----- the cheap guard ------------------------------------------------------------------------------
@dataclass
class GuardResult:
    losses: list[float]  # per step run
    grad_norms: list[float]
    trip_step: int | None = None  # index of the first step whose loss or gradient was not finite
    trip_phase: str | None = None  # "forward" (the loss) or "backward" (the gradients)


def guarded_steps(model: nn.Module, optimizer: torch.optim.Optimizer, step_loss: Callable[[nn.Module], torch.Tensor],
                  steps: int, keep_going: Callable[[], bool] = lambda: True) -> GuardResult:
    """Up to ``steps`` training steps; stop at the first non-finite loss or gradient norm."""
    result = GuardResult([], [])
    params = [p for p in model.parameters() if p.requires_grad]
    for step in range(steps):
        optimizer.zero_grad(set_to_none=True)
        loss = step_loss(model)
        loss.backward()
        grads = [p.grad.coalesce().values() if p.grad.is_sparse else p.grad for p in params if p.grad is not None]
        norms = [n.float().to(loss.device) for n in torch._foreach_norm(grads)] if grads else [loss.new_zeros(())]
        norm = torch.linalg.vector_norm(torch.stack(norms))
        loss_value, norm_value = torch.stack([loss.detach().float().reshape(()), norm]).tolist()  # one sync
        result.losses.append(loss_value)
        result.grad_norms.append(norm_value)
        if not math.isfinite(loss_value) or not math.isfinite(norm_value):
            result.trip_step = step
            result.trip_phase = "forward" if not math.isfinite(loss_value) else "backward"
            return result
        optimizer.step()
        if not keep_going():
            break
    return result


def replay_to(model: nn.Module, optimizer: torch.optim.Optimizer, step_loss: Callable[[nn.Module], torch.Tensor],
              steps: int) -> None:
    """Run ``steps`` plain training steps, exactly as ``guarded_steps`` ran them."""
    for _ in range(steps):
        optimizer.zero_grad(set_to_none=True)
        step_loss(model).backward()
        optimizer.step()
    optimizer.zero_grad(set_to_none=True)


# ----- the replay ------------------------------------------------------------------------------------
def value_range(t: torch.Tensor) -> dict[str, Any]:
    """Shape, finite min/max and counts of NaN, Inf, zeros and negatives of a tensor."""
    t = t.detach()
    x = (t.abs() if t.is_complex() else t).double()
    finite = torch.isfinite(x)
    values = x[finite]
    counts = torch.stack([(~finite & torch.isnan(x)).sum(), torch.isinf(x).sum(), (x == 0).sum(), (x < 0).sum()])
    nan, inf, zeros, negative = counts.tolist()
    return {"shape": list(t.shape), "min": float(values.min()) if values.numel() else None,
            "max": float(values.max()) if values.numel() else None,
            "nan": nan, "inf": inf, "zeros": zeros, "negative": negative, "numel": t.numel()}


@dataclass
class Birth:
    """The first op (forward) or node (backward) that made a non-finite value from finite ones."""

    phase: str  # forward | backward
    op: str  # the forward op ("log"); for backward the forward op whose derivative failed
    site: Site
    inputs: list[dict[str, Any]]  # value_range of each tensor input of the forward op
    produced: dict[str, Any]  # value_range of the output (forward) or of the gradient made (backward)
    node: str = ""  # backward: the autograd node, e.g. "SqrtBackward0"
    incoming: dict[str, Any] | None = None  # backward: value_range of the gradient that came in


@dataclass
class _Op:
    name: str
    site: Site
    inputs: list[torch.Tensor] = field(default_factory=list)  # detached, floating


class FirstNonFinite(ModuleAwareMode):
    """``with FirstNonFinite(model) as probe: loss = <forward and loss>``; then ``probe.birth_of(loss)``;
    ``with probe.watch_backward(loss): loss.backward()``; then ``probe.backward_birth``.

    Non-finite values are followed from op to op, so the birth named is the one whose values reached
    the loss (a ``-inf`` that ``torch.where`` discards is not it). ``probe.entered`` names the first op
    that received NaN no traced op had made (from the parameters or the data)."""

    def __init__(self, model: nn.Module):
        super().__init__(model)
        self.births: list[Birth] = []  # forward births, in op order
        self.backward_birth: Birth | None = None
        self.entered: tuple[str, Site] | None = None
        self._ops: dict[Any, _Op] = {}  # autograd node -> the forward op that created it
        self._carriers: dict[int, tuple[weakref.ref, Birth]] = {}  # tensors holding a birth's non-finite values

    def birth_of(self, t: torch.Tensor) -> Birth | None:
        """The forward birth whose non-finite values ``t`` carries; None when they came from elsewhere."""
        return self._carried(t)

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        result = func(*args, **kwargs)
        name = getattr(func, "__name__", "")
        outputs = [t for t in tensors_in(result) if t.is_floating_point() or t.is_complex()]
        if not outputs or name.startswith("__get") or name in _UNINITIALISED:
            return result
        inputs = [t for t in tensors_in((args, kwargs)) if t.is_floating_point() or t.is_complex()]
        site = None
        if any(t.grad_fn is not None for t in outputs):
            site = current_site(self._modules, sys._getframe(0))
            for t in outputs:
                if t.grad_fn is not None and t.grad_fn not in self._ops:
                    self._ops[t.grad_fn] = _Op(name, site, [t.detach() for t in inputs])
        self._check(name, inputs, outputs, site)
        return result

    def _check(self, name: str, inputs: list[torch.Tensor], outputs: list[torch.Tensor], site: Site | None) -> None:
        out_nan, out_inf = _flags(outputs)
        if not (out_nan or out_inf):
            return
        birth = next((b for t in inputs if (b := self._carried(t)) is not None), None)
        if birth is None:
            in_nan, in_inf = _flags(inputs)
            site = site or current_site(self._modules, sys._getframe(0))
            if (out_nan and not in_nan) or (out_inf and not (in_nan or in_inf) and name not in _WRITES_INF):
                made = next(t for t in outputs if not bool(torch.isfinite(t).all()))
                birth = Birth("forward", name, site, [value_range(t) for t in inputs], value_range(made))
                self.births.append(birth)
            elif in_nan and self.entered is None:
                self.entered = (name, site)
        if birth is not None:
            for t in outputs:
                self._carriers[id(t)] = (weakref.ref(t), birth)

    def _carried(self, t: torch.Tensor) -> Birth | None:
        entry = self._carriers.get(id(t))
        return entry[1] if entry is not None and entry[0]() is t else None

    @contextmanager
    def watch_backward(self, loss: torch.Tensor) -> Iterator[None]:
        """Hooks on every node of ``loss``'s graph while ``loss.backward()`` runs."""
        handles = []
        owner: dict[Any, _Op | None] = {}  # node -> its forward op, or the nearest traced op it feeds
        stack: list[tuple[Any, _Op | None]] = [(loss.grad_fn, None)]
        while stack:
            node, consumer = stack.pop()
            if node is None or node in owner:
                continue
            op = self._ops.get(node, consumer)
            owner[node] = op
            handles.append(node.register_hook(self._backward_hook(node, op)))
            stack.extend((child, op) for child, _ in node.next_functions)
        try:
            yield
        finally:
            for handle in handles:
                handle.remove()

    def _backward_hook(self, node: Any, op: _Op | None):
        def hook(grad_inputs: tuple, grad_outputs: tuple) -> None:
            if self.backward_birth is not None:
                return
            made = [g for g in grad_inputs if isinstance(g, torch.Tensor)]
            came = [g for g in grad_outputs if isinstance(g, torch.Tensor)]
            if not any(_flags(made)) or any(_flags(came)):
                return
            bad = next(g for g in made if not bool(torch.isfinite(g).all()))
            self.backward_birth = Birth(
                "backward", op.name if op else node.name(), op.site if op else Site(None, "", False, "", ""),
                [value_range(t) for t in op.inputs] if op else [], value_range(bad), node=node.name(),
                incoming=value_range(came[0]) if came else None)

        return hook


def _flags(tensors: list[torch.Tensor]) -> tuple[bool, bool]:
    """(any NaN, any Inf) over the tensors, in one host transfer."""
    if not tensors:
        return False, False
    checks = torch.stack([torch.stack([torch.isnan(t).any(), torch.isinf(t).any()]).to(tensors[0].device)
                          for t in tensors])
    nan, inf = checks.any(0).tolist()
    return bool(nan), bool(inf)
