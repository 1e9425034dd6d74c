"""Step 2, wrong shapes that do not crash: silent broadcasting (SHP001) and batch mixing (SHP002)."""
from __future__ import annotations

import math
import warnings
from typing import Any

import torch
from torch import nn

from nndoctor import data as D
from nndoctor.checks import SkipCheck, check
from nndoctor.context import Context
from nndoctor.probes.broadcast import BROADCASTING_LOSSES, Broadcast, BroadcastTracer
from nndoctor.probes.sample_rows import Event, Rows, SampleRows, moves_of_others

# ----- SHP001 ----------------------------------------------------------------------------------

_LOSS_OPS = {f.__name__ for f in BROADCASTING_LOSSES}
_LOSS_CLASS = {"mse_loss": "MSELoss", "l1_loss": "L1Loss", "smooth_l1_loss": "SmoothL1Loss", "huber_loss": "HuberLoss"}


@check("silent-broadcast", step="bugs", codes=("SHP001",), needs_run=False)
def silent_broadcast(ctx: Context) -> None:
    """Trace the forward and the loss for elementwise ops that pair every sample with every other."""
    batch = ctx.first_batch()
    found = _misaligned_broadcasts(ctx, batch)
    n = D.batch_len(batch)
    if found and n >= 3:
        # A batch of another size must give the same broadcast at the same site: a shape that only
        # coincides with the batch size (`t[:, None] * freqs` with len(freqs) == N) does not.
        try:
            again = {_site(e) for e in _misaligned_broadcasts(ctx, D.index(batch, slice(0, n - 1)), strict=True)}
            found = [e for e in found if _site(e) in again]
        except Exception:  # a model that needs this exact batch size: keep what the first run showed
            pass
    for event in found[:3]:
        _report_broadcast(ctx, event)


def _misaligned_broadcasts(ctx: Context, batch: Any, strict: bool = False) -> list[Broadcast]:
    model = ctx.fresh_model().train()  # shapes as in a training step
    with warnings.catch_warnings(), torch.no_grad(), BroadcastTracer(model) as tracer:
        warnings.simplefilter("ignore")  # torch's own size warning for MSELoss: we report it better
        try:
            ctx.loss_of(model, batch)
        except SkipCheck:
            raise
        except Exception:  # a crash is step 1's finding; the ops that ran before it still count
            if strict:
                raise
    return [e for e in tracer.events if _is_misaligned(e)]


def _is_misaligned(event: Broadcast) -> bool:
    """Two tensors holding the same values per position, one with an extra size-1 axis, so that implicit
    left-padding pairs each element of one with every element of the other: `(N, 1) - (N,)` -> `(N, N)`.

    Broadcasts written on purpose are left alone: explicit outer products give both operands the same
    rank (`a[:, None] * b[None, :]`), pairwise ops on one tensor share its storage (`x[:, None] - x`),
    index and mask grids are not floating point (`i[:, None] >= i`), and bias, scale, mask and
    position-embedding broadcasts are not larger than both inputs.
    """
    a, b = event.shapes
    return event.floating and not event.same_storage and len(a) != len(b) and _squeezed(a) == _squeezed(b)


def _squeezed(shape: tuple[int, ...]) -> tuple[int, ...]:
    return tuple(s for s in shape if s != 1)


def _site(event: Broadcast) -> tuple[str, str | None, str]:
    return event.op, event.module, event.source


def _report_broadcast(ctx: Context, e: Broadcast) -> None:
    a, b = e.shapes
    wide, narrow = (a, b) if len(a) > len(b) else (b, a)
    if e.module is None:
        where = "loss_fn" if ctx.setup.step is None else "step"
    else:
        where = f"model.{e.module}".rstrip(".")
    location = f"{where} ({e.source})" if e.source else where
    is_loss = e.op in _LOSS_OPS
    op = f"`F.{e.op}` (`nn.{_LOSS_CLASS[e.op]}`)" if is_loss else f"`{e.op}`"
    matched, pairs = math.prod(_squeezed(a)), math.prod(e.result)
    message = (f"{op} in {where} broadcast shapes {a} and {b} into {e.result}: {pairs} pairs instead of "
               f"{matched} matched elements, every element of one paired with every element of the other.")
    if is_loss or e.module is None:
        message += (" In a loss this compares each prediction with every target, so the model can only learn "
                    "their average; it trains without an error and never fits.")
    if e.source_line:
        message += f" At {e.source}: `{e.source_line}`."
    fix = _reshape_fix(wide, narrow)
    suggestions = [f"Give both operands the same shape {narrow}: {fix}."]
    if is_loss:
        suggestions.append(f"Or keep the targets as {wide} in the data (`y.unsqueeze(1)` / `y.view(-1, 1)`), "
                           "matching the model's output.")
    suggestions.append("Assert shapes before an elementwise loss: `assert pred.shape == target.shape`.")
    ctx.emit("SHP001", message, location=location,
             evidence={"op": e.op, "shapes": [list(a), list(b)], "result": list(e.result),
                       "module": where, "source": e.source, "source_line": e.source_line},
             suggestions=suggestions)


def _reshape_fix(wide: tuple[int, ...], narrow: tuple[int, ...]) -> str:
    ones = [i - len(wide) for i, s in enumerate(wide) if s == 1]
    if len(wide) == len(narrow) + 1 and len(ones) == 1:
        return f"`.squeeze({ones[0]})` the {wide} operand"
    return f"`.reshape{narrow}` the {wide} operand"


# ----- SHP002 ----------------------------------------------------------------------------------

# Relative change of another sample's values that counts as "moved": far above float rounding, which
# is zero here anyway (the same ops on the same values), and above nondeterministic kernels (~1e-6).
_TOLERANCE = {torch.float16: 1e-2, torch.bfloat16: 5e-2}
_DEFAULT_TOLERANCE = 1e-4


@check("batch-independence", step="bugs", codes=("SHP002",), needs_run=False)
def batch_independence(ctx: Context) -> None:
    """Replace one sample of a batch and see whether the eval-mode outputs of the others move."""
    batch = ctx.first_batch()
    pair = ctx.pair(batch)
    feed = pair[0] if pair is not None else batch  # what gets perturbed
    n = _sample_count(pair, batch)
    if n < 2:
        raise SkipCheck("the first batch has fewer than two samples")
    swapped = _swap_sample(feed, n)
    if swapped is None:
        raise SkipCheck("the samples of the first batch are all identical")
    perturbed, k, j = swapped
    base = _sample_rows(ctx, feed, n, pair is not None)
    moved = _sample_rows(ctx, perturbed, n, pair is not None)
    if len(moved) != len(base):
        raise SkipCheck("the model ran differently on the two batches (data-dependent control flow)")
    final = next((i for i in reversed(range(len(base))) if base[i].path == "" and base[i].kind == "output"), None)
    if final is None or not base[final].tensors:
        raise SkipCheck("the model's outputs have no dimension of the batch's size; cannot tell samples apart")
    mixing = [_mixing(b, m, k) for b, m in zip(base, moved)]
    if mixing[final] is None:
        return
    first = next(i for i, found in enumerate(mixing) if found is not None)
    _report_mixing(ctx, base[first], mixing[first], mixing[final], n, k, j)


def _sample_count(pair: tuple[Any, Any] | None, batch: Any) -> int:
    if pair is not None and isinstance(pair[1], torch.Tensor) and pair[1].ndim >= 1:
        return int(pair[1].shape[0])
    return D.batch_len(pair[0] if pair is not None else batch)


def _batch_dim(t: torch.Tensor, n: int) -> int | None:
    if t.ndim >= 1 and t.shape[0] == n:
        return 0
    return next((d for d, size in enumerate(t.shape) if size == n), None)


def _swap_sample(feed: Any, n: int) -> tuple[Any, int, int] | None:
    """``feed`` with sample 0 replaced by the first sample that differs from it, in every tensor."""
    leaves = [t for t in D.tensors_in(feed) if _batch_dim(t, n) is not None]
    rows = [t.movedim(_batch_dim(t, n), 0) for t in leaves]
    k = 0
    j = next((i for i in range(1, n) if any(not torch.equal(r[i], r[k]) for r in rows)), None)
    if j is None:
        return None

    def swap(t: Any) -> Any:
        d = _batch_dim(t, n) if isinstance(t, torch.Tensor) else None
        if d is None:
            return t
        t = t.clone()
        t.select(d, k).copy_(t.select(d, j))
        return t

    return D.map_tensors(swap, feed), k, j


def _sample_rows(ctx: Context, feed: Any, n: int, is_inputs: bool) -> list[Event]:
    model = ctx.fresh_model().eval()  # eval: batch-norm uses its running statistics, dropout is off
    with torch.random.fork_rng(devices=[]), torch.no_grad(), warnings.catch_warnings(), SampleRows(model, n) as rows:
        warnings.simplefilter("ignore")  # the user's own warnings, shown once by step 1 already
        torch.manual_seed(0)  # random ops in forward draw the same numbers in both runs
        try:
            if is_inputs:
                ctx.forward(model, feed)
            else:
                ctx.setup.step(model, feed)
        except Exception as exc:
            raise SkipCheck(f"the model did not run in eval mode without gradients ({type(exc).__name__})") from None
    return rows.events


def _mixing(before: Event, after: Event, k: int) -> tuple[int, float] | None:
    """(samples other than ``k`` that moved, largest relative move) over the event's tensors; None when
    none moved."""
    worst = None
    for rows_before, rows_after in zip(before.tensors, after.tensors):
        if rows_before.values.shape != rows_after.values.shape:
            continue
        moves = moves_of_others(rows_before, rows_after, k)  # (N-1,)
        moved = int((moves > _tolerance(rows_before)).sum())
        if moved and (worst is None or (moved, float(moves.max())) > worst):
            worst = (moved, float(moves.max()))
    return worst


def _tolerance(rows: Rows) -> float:
    return _TOLERANCE.get(rows.dtype, _DEFAULT_TOLERANCE)


def _report_mixing(ctx: Context, first: Event, local: tuple[int, float], final: tuple[int, float],
                   n: int, k: int, j: int) -> None:
    moved, size = final
    module = first.module
    kind = type(module).__name__
    leaf = not any(True for _ in module.children())
    path = f"model.{first.path}".rstrip(".")
    severity = None
    suggestions = ["Reorder axes with `permute`/`transpose`, not `view`/`reshape` (they only reinterpret memory)."]
    if first.kind == "input":
        caller = f"model.{first.caller}".rstrip(".") if first.caller is not None else "model"
        location = caller
        where = (f"the inputs of {path} ({kind}) already mix samples: the mixing happens in the forward of "
                 f"{caller}, before it calls {path}")
    elif leaf:
        location = path
        where = f"the mixing first appears at the output of {path} ({_short_repr(module)})"
        dim = getattr(module, "dim", None)
        if isinstance(module, (nn.Softmax, nn.LogSoftmax, nn.Softmin)) and dim in (0, None):
            suggestions.insert(0, f"{kind} normalises over dim {dim}, the batch axis: use `dim=1` (or `dim=-1`).")
        if isinstance(module, nn.modules.batchnorm._BatchNorm) and not module.track_running_stats:
            severity = "warning"  # a design choice, not a typo; predictions still depend on the batch
            suggestions.insert(0, "This batch-norm has track_running_stats=False, so it normalises with the "
                                  "statistics of each batch even in eval mode; keep running statistics, or use "
                                  "LayerNorm/GroupNorm if predictions must not depend on the batch.")
    else:
        location = path
        where = (f"the mixing first appears at the output of {path} ({kind}), in its own forward code after its "
                 "submodules")
    suggestions.append("Look for softmax/log_softmax/mean/sum/norm over dim 0, the batch axis.")
    message = (f"Replacing sample {k} of a batch of {n} with sample {j} changed the eval-mode outputs of {moved} "
               f"other samples (by up to {size:.2g} of the output's scale): each sample's prediction depends on "
               f"the rest of its batch. {where[0].upper() + where[1:]} (other samples moved by up to {local[1]:.2g}).")
    ctx.emit("SHP002", message, location=location, severity=severity,
             evidence={"batch_size": n, "replaced_sample": k, "other_samples_moved": moved,
                       "max_relative_change": size, "first_seen": f"{first.kind} of {path}", "module_type": kind},
             suggestions=suggestions)


def _short_repr(module: nn.Module) -> str:
    text = repr(module)
    return text if len(text) <= 60 else type(module).__name__
