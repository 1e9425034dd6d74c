"""OpTrace: where the tensors of one forward-and-loss pass came from, and the fragile ops in it.

A ``TorchFunctionMode``, active only inside ``with``. For every tensor made by an op that bounds or
normalises values (softmax, log_softmax, sigmoid, tanh, ReLU-like), it remembers an ``Origin``: the op
and its ``Site`` (the running module and the user's line). The origin follows the tensor through
view-like ops (reshape, squeeze, indexing, dtype casts) and through ``1 - p``; an ``exp`` divided by a
sum of ``exp`` counts as a softmax written by hand; a linear layer's or convolution's output is marked
"affine" (unbounded: logits). It records:
  - ``losses``: every call of a ``torch.nn.functional`` loss (which is what ``nn.CrossEntropyLoss``
    and friends call) with its arguments, value and the origin of its input, so a check knows which
    loss really runs inside any ``loss_fn`` and can recompute it on other predictions;
  - ``risks``: the log of a softmax/sigmoid output, the log of a sum of exps, a softmax written by
    hand, the exp of large values, a division by values near zero.
Only measures; which of these are bugs is for the checks.
"""
from __future__ import annotations

import math
import sys
import weakref
from functools import lru_cache
from dataclasses import dataclass, replace
from typing import Any, Callable

import torch
import torch.nn.functional as F
from torch import nn

from nndoctor.probes.errors import is_library_file, user_call_site
from nndoctor.probes.trace import ModuleAwareMode, ModuleTrace

LOSS_FUNCTIONS: dict[Callable[..., Any], str] = {
    F.cross_entropy: "cross_entropy", F.nll_loss: "nll_loss", F.kl_div: "kl_div",
    F.binary_cross_entropy: "binary_cross_entropy",
    F.binary_cross_entropy_with_logits: "binary_cross_entropy_with_logits",
    F.mse_loss: "mse_loss", F.l1_loss: "l1_loss", F.smooth_l1_loss: "smooth_l1_loss", F.huber_loss: "huber_loss",
}
# Ops whose output range says what the tensor is (probabilities, log-probabilities, non-negative...).
BOUNDING_OPS = {"softmax": "softmax", "log_softmax": "log_softmax", "sigmoid": "sigmoid", "sigmoid_": "sigmoid",
                "tanh": "tanh", "tanh_": "tanh", "relu": "relu", "relu_": "relu", "relu6": "relu6",
                "softplus": "softplus", "logsigmoid": "logsigmoid"}
# Ops whose output is unbounded by construction (an affine layer's raw output: logits, not probabilities).
AFFINE_OPS = {"linear", "bilinear", "conv1d", "conv2d", "conv3d", "conv_transpose1d", "conv_transpose2d",
              "conv_transpose3d", "matmul", "addmm", "mm", "bmm", "__matmul__", "einsum"}
# Ops that only reshape, select or cast: the result holds the same kind of values as the input.
VIEW_OPS = {"view", "reshape", "squeeze", "unsqueeze", "squeeze_", "unsqueeze_", "flatten", "contiguous", "float",
            "double", "half", "bfloat16", "to", "clone", "permute", "transpose", "t", "view_as", "reshape_as",
            "__getitem__", "select", "narrow", "detach", "type", "movedim", "expand", "expand_as", "cpu", "cuda",
            "split", "chunk", "unbind", "tensor_split"}
LOG_OPS = {"log", "log_", "log2", "log10"}
DIVISIONS = {"div", "div_", "divide", "true_divide", "__truediv__", "__itruediv__", "__rtruediv__"}
_OBSERVED = set(BOUNDING_OPS) | AFFINE_OPS | VIEW_OPS | LOG_OPS | DIVISIONS | {"exp", "exp_", "sum", "__rsub__"}
NEAR_ZERO = 1e-12  # a denominator this close to 0 turns any ordinary numerator into ~1e12 or more


@dataclass(frozen=True)
class Site:
    """Where an op ran: the innermost running module and the user's line."""

    module: str | None  # named_modules() path; None outside the model (in the loss)
    module_type: str
    leaf: bool  # the module has no children (an nn.Softmax layer rather than a forward that calls F.softmax)
    source: str  # "file.py:12" of the user's code, or "" (library code called from nndoctor)
    source_line: str

    def location(self, outside: str = "loss_fn") -> str:
        """ "model.3" for a layer; "model.head (file.py:12)" for a functional call in a forward; the
        ``outside`` name (with the line) for an op in the loss."""
        where = outside if self.module is None else f"model.{self.module}".rstrip(".")
        if self.source and not (self.leaf and self.module is not None):
            return f"{where} ({self.source})"
        return where

    def describe(self) -> str:
        """The site in words, for messages: "model.3 (Softmax)", "model (net.py:12: `...`)"."""
        if self.module is not None and self.leaf:
            return f"model.{self.module} ({self.module_type})"
        where = "the loss" if self.module is None else f"the forward of {f'model.{self.module}'.rstrip('.')}"
        return f"{where} at {self.source}: `{self.source_line}`" if self.source else where


@dataclass(frozen=True)
class Origin:
    """The op that made a tensor's values what they are."""

    op: str  # a value of BOUNDING_OPS, "affine", "exp" or "sum_exp"
    site: Site
    dim_size: int | None = None  # softmax/log_softmax: the size of the normalised dimension
    hand_written: bool = False  # a softmax written as exp(x) / exp(x).sum(...)
    complement: bool = False  # 1 - p


@dataclass
class LossCall:
    """One call of a functional loss: ``func(input, target, ...)``."""

    name: str  # e.g. "cross_entropy"
    func: Callable[..., Any]
    args: tuple  # (input, target, ...) detached, as passed (input and target positional)
    kwargs: dict[str, Any]
    value: torch.Tensor  # the loss, detached
    origin: Origin | None  # where the input came from, when an op above made it
    site: Site  # where the loss was called (module None: outside the model)

    @property
    def input(self) -> torch.Tensor:
        return self.args[0]

    @property
    def target(self) -> Any:
        return self.args[1] if len(self.args) > 1 else None

    def recompute(self, new_input: torch.Tensor) -> torch.Tensor:
        """The same loss, with the same targets and options, on other predictions."""
        return self.func(new_input, *self.args[1:], **self.kwargs)


@dataclass(frozen=True)
class Risk:
    kind: str  # log-of-probabilities | log-of-sum-exp | hand-written-softmax | large-exp | near-zero-division
    op: str
    site: Site
    origin: Origin | None = None  # for logs: the op that made the probabilities
    value: float | None = None  # large-exp: the largest input; near-zero-division: the smallest |denominator|


class OpTrace(ModuleAwareMode):
    """``with OpTrace(model) as trace: <forward and loss>``; then read ``trace.losses`` and ``trace.risks``."""

    def __init__(self, model: nn.Module | None = None):
        super().__init__(model)
        self.losses: list[LossCall] = []
        self.risks: list[Risk] = []
        self._origins: dict[int, tuple[weakref.ref, Origin]] = {}

    def origin_of(self, t: Any) -> Origin | None:
        entry = self._origins.get(id(t)) if isinstance(t, torch.Tensor) else None
        return entry[1] if entry is not None and entry[0]() is t else None

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        result = func(*args, **kwargs)
        name = getattr(func, "__name__", "")
        if func in LOSS_FUNCTIONS:
            self._loss(func, args, kwargs, result)
        elif name in _OBSERVED:
            self._observe(name, args, kwargs, result)
        return result

    # ----- what each op tells -----------------------------------------------------------------------
    def _observe(self, name: str, args: tuple, kwargs: dict, result: Any) -> None:
        first = args[0] if args else None
        source = self.origin_of(first)
        if name in BOUNDING_OPS:
            self._mark(result, Origin(BOUNDING_OPS[name], self._site(), _normalised_size(name, args, kwargs)))
        elif name in AFFINE_OPS:
            self._mark(result, Origin("affine", self._site()))
        elif name in VIEW_OPS:
            if source is not None:
                for t in result if isinstance(result, (tuple, list)) else (result,):
                    self._mark(t, source)
        elif name == "__rsub__":  # 1 - p
            if source is not None and source.op in ("sigmoid", "softmax") and len(args) > 1 and args[1] == 1:
                self._mark(result, replace(source, complement=not source.complement))
        elif name in LOG_OPS:
            if source is not None and source.op in ("softmax", "sigmoid"):
                self._risk(Risk("log-of-probabilities", name, self._site(), source))
            elif source is not None and source.op == "sum_exp":
                self._risk(Risk("log-of-sum-exp", name, self._site(), source))
        elif name in ("exp", "exp_"):
            self._exp(first, result)
        elif name == "sum":
            if source is not None and source.op == "exp":
                self._mark(result, replace(source, op="sum_exp"))
        elif name in DIVISIONS:
            self._division(name, args, result)

    def _exp(self, x: Any, result: Any) -> None:
        if not isinstance(x, torch.Tensor) or not x.is_floating_point() or not x.numel():
            return
        self._mark(result, Origin("exp", self._site()))
        largest = float(x.detach().max())
        if largest > 0.5 * math.log(torch.finfo(x.dtype).max):  # float32: 44, half of where exp overflows
            self._risk(Risk("large-exp", "exp", self._site(), value=largest))

    def _division(self, name: str, args: tuple, result: Any) -> None:
        if len(args) < 2:
            return
        numerator, denominator = (args[1], args[0]) if name == "__rtruediv__" else (args[0], args[1])
        top, bottom = self.origin_of(numerator), self.origin_of(denominator)
        if top is not None and top.op == "exp" and bottom is not None and bottom.op == "sum_exp":
            softmax = Origin("softmax", self._site(), hand_written=True)
            self._mark(result, softmax)
            self._risk(Risk("hand-written-softmax", "exp", softmax.site, top))
            return
        if isinstance(denominator, torch.Tensor) and denominator.is_floating_point() and denominator.numel():
            smallest = float(denominator.detach().abs().min())
            if smallest < NEAR_ZERO:
                self._risk(Risk("near-zero-division", name.strip("_"), self._site(), value=smallest))

    def _loss(self, func: Callable[..., Any], args: tuple, kwargs: dict, result: Any) -> None:
        kwargs = dict(kwargs)
        args = tuple(args) or ((kwargs.pop("input"),) if "input" in kwargs else ())
        if len(args) == 1 and "target" in kwargs:
            args += (kwargs.pop("target"),)  # positional from here on, so recompute() can swap the input
        if not args or not isinstance(args[0], torch.Tensor) or not isinstance(result, torch.Tensor):
            return
        detach = lambda v: v.detach() if isinstance(v, torch.Tensor) else v  # noqa: E731
        self.losses.append(LossCall(
            LOSS_FUNCTIONS[func], func, tuple(detach(a) for a in args), {k: detach(v) for k, v in kwargs.items()},
            result.detach(), self.origin_of(args[0]), self._site()))

    # ----- bookkeeping --------------------------------------------------------------------------------
    def _mark(self, t: Any, origin: Origin) -> None:
        if isinstance(t, torch.Tensor):
            self._origins[id(t)] = (weakref.ref(t), origin)

    def _risk(self, risk: Risk) -> None:
        if not any((r.kind, r.site) == (risk.kind, risk.site) for r in self.risks):
            self.risks.append(risk)

    def _site(self) -> Site:
        return current_site(self._modules, sys._getframe(1))


def current_site(modules: ModuleTrace | None, frame) -> Site:
    """The running module (top of ``modules``' stack) and the user's line, walking out from ``frame``."""
    here = frame.f_code.co_filename
    while frame is not None and frame.f_code.co_filename == here:  # the probe's own frames
        frame = frame.f_back
    source, line = user_call_site(frame)
    stack = modules.stack if modules is not None else []
    if not stack:
        return Site(None, "", False, source, line)
    top = stack[-1]
    if _library_class(type(top.module)):  # the op ran in library code (a TransformerEncoderLayer's forward):
        source, line = "", ""  # the user's nearest line is only where the model was called
    return Site(top.path, type(top.module).__name__, not any(True for _ in top.module.children()), source, line)


@lru_cache(maxsize=None)
def _library_class(cls: type) -> bool:
    module = sys.modules.get(cls.__module__)
    filename = getattr(module, "__file__", None)
    return filename is not None and is_library_file(filename)


def _normalised_size(name: str, args: tuple, kwargs: dict) -> int | None:
    """For softmax/log_softmax: the size of the dimension it normalises over."""
    if name not in ("softmax", "log_softmax") or not args or not isinstance(args[0], torch.Tensor):
        return None
    x = args[0]
    dim = kwargs.get("dim", args[1] if len(args) > 1 else None)
    if dim is None:  # the legacy implicit dim of F.softmax
        dim = 0 if x.ndim in (0, 1, 3) else 1
    return int(x.shape[dim]) if x.ndim else 1
