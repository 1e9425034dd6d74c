"""Step 2, wrong input to the loss: probabilities into a logits loss (LOS001), logits or probabilities into
a log-probability loss (LOS002), a loss or output activation that cannot fit the targets (LOS003); the
untrained loss against an uninformed model's (LOS004) is judged in ``initial_loss.py`` from the same pass.

One traced forward-and-loss pass of the untrained model (train mode, no gradients; probes/op_trace.py)
tells which ``torch.nn.functional`` loss really runs inside ``loss_fn`` (an ``nn.Module``, ``F.*``, a
lambda or the model's own loss under ``step``), what its input and targets hold, and which op made the
input (a softmax layer, a sigmoid in the forward...). Verdicts read the values themselves; the origin
names the culprit.
"""
from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import Any

import torch

from nndoctor.checks import SkipCheck, check
from nndoctor.context import Context
from nndoctor.probes.op_trace import LossCall, OpTrace, Origin

LOGIT_LOSSES = {"cross_entropy", "binary_cross_entropy_with_logits"}
LOG_PROB_LOSSES = {"nll_loss", "kl_div"}
REGRESSION = {"mse_loss", "l1_loss", "smooth_l1_loss", "huber_loss"}
BINARY = {"binary_cross_entropy", "binary_cross_entropy_with_logits"}
MODULE_OF = {"cross_entropy": "CrossEntropyLoss", "nll_loss": "NLLLoss", "kl_div": "KLDivLoss",
             "binary_cross_entropy": "BCELoss", "binary_cross_entropy_with_logits": "BCEWithLogitsLoss",
             "mse_loss": "MSELoss", "l1_loss": "L1Loss", "smooth_l1_loss": "SmoothL1Loss", "huber_loss": "HuberLoss"}
# The range each output activation can reach.
RANGE = {"sigmoid": (0.0, 1.0), "tanh": (-1.0, 1.0), "relu": (0.0, math.inf), "relu6": (0.0, 6.0),
         "softplus": (0.0, math.inf), "softmax": (0.0, 1.0)}
ROW_SUM_TOLERANCE = 1e-3  # probabilities from softmax sum to 1 within float rounding (~1e-6)
UNREACHABLE = 0.01  # share of targets out of an activation's range that makes it a mismatch


@dataclass
class TracedPass:
    trace: OpTrace
    loss: Any  # what loss_fn/step returned


def traced_pass(ctx: Context) -> TracedPass:
    """The untrained model's forward and loss on the first batch, traced (computed once per run)."""

    def compute() -> TracedPass | None:
        batch = ctx.first_batch()
        model = ctx.fresh_model().train()  # as a training step sees it
        with torch.random.fork_rng(devices=[]), torch.no_grad(), warnings.catch_warnings(), OpTrace(model) as trace:
            warnings.simplefilter("ignore")  # the user's own warnings were shown by step 1
            torch.manual_seed(ctx.seed)
            try:
                loss, _ = ctx.loss_of(model, batch)
            except SkipCheck:
                raise
            except Exception:  # step 1 ran this on the same batch; a crash here is nondeterminism
                return None
        return TracedPass(trace, loss)

    traced = ctx.measure("op_trace", compute)
    if traced is None:
        raise SkipCheck("the traced forward and loss did not run")
    return traced


def _losses(ctx: Context) -> list[LossCall]:
    calls = traced_pass(ctx).trace.losses
    if not calls:
        raise SkipCheck("no torch.nn.functional loss (nn.CrossEntropyLoss, F.mse_loss...) runs in the loss")
    return calls


# ----- LOS001, LOS002, LOS003 ---------------------------------------------------------------------


@check("loss-input", step="bugs", codes=("LOS001", "LOS002", "LOS003"))
def loss_input(ctx: Context) -> None:
    """What goes into each loss call: probabilities, logits, log-probabilities, and can it fit the targets?"""
    explained = _explained(ctx)
    for i, call in enumerate(_losses(ctx)):
        if call.input.is_floating_point() and any(judge(ctx, call) for judge in _JUDGES):
            explained.add(i)  # one finding per call: the first judge that applies names the root cause


def _probabilities_into_logits(ctx: Context, call: LossCall) -> bool:
    if call.name not in LOGIT_LOSSES:
        return False
    x = call.input
    origin = _squashing(call.origin)
    if call.name == "cross_entropy":
        rows = _probability_rows(x, _class_dim(x))
        if origin is None and not rows:
            return False
        c = x.shape[_class_dim(x)] if x.ndim else 1
        floor = math.log(c - 1 + math.e) - 1  # the loss of a one-hot probability row on the right class
        what = "probabilities, not logits"
        if rows:
            what = "its rows lie in [0, 1] and sum to 1, so they are " + what
        consequence = (f"CrossEntropyLoss applies log-softmax itself and needs unbounded logits; squeezed into [0, 1], "
                       f"the loss cannot go below {floor:.2f} however well the model learns (instead of 0), and the "
                       "gradients are squashed.")
        fixes = ["CrossEntropyLoss takes raw logits: return them from the model and apply softmax only "
                 "when you need probabilities (at inference)."]
        evidence = {"classes": c, "loss_floor": round(floor, 4)}
    else:
        # values alone only when no affine layer made them: a linear output can sit in (0, 1) by its bias
        inside = call.origin is None and x.numel() >= 8 and bool(((x > 0) & (x < 1)).all())
        if origin is None and not inside:
            return False
        what = "probabilities, not logits"
        if inside:
            what = "every value lies in (0, 1), so they are " + what
        consequence = ("BCEWithLogitsLoss applies a sigmoid itself: sigmoid(p) >= 0.5 for every p in (0, 1), so the "
                       "model can never predict the negative class, and the loss cannot go below 0.31.")
        fixes = ["BCEWithLogitsLoss takes raw logits: remove the sigmoid and apply it only at inference."]
        evidence = {}
    evidence.update(_value_evidence(x), loss=MODULE_OF[call.name])
    located = origin is not None
    if located:
        fixes.insert(0, _remove_fix(origin))
    where = _where(ctx, call, origin)
    source = f"comes from {origin.site.describe()}" if located else "is not logits"
    message = f"The input of {_loss_name(call)} ({_shape(x)}) {source}: {what}. {consequence}"
    ctx.emit("LOS001", message, location=where, severity=None if located or call.name == "cross_entropy" else "warning",
             evidence=evidence, suggestions=fixes)
    return True


def _not_log_probabilities(ctx: Context, call: LossCall) -> bool:
    if call.name not in LOG_PROB_LOSSES or (call.origin is not None and call.origin.op == "log_softmax"):
        return False
    x = call.input.float()
    dims = [_class_dim(x)] if call.name == "nll_loss" else sorted({_class_dim(x), x.ndim - 1})
    tolerance = 1e-2 if call.input.dtype in (torch.float16, torch.bfloat16) else 1e-3
    sums = {d: torch.logsumexp(x, dim=d) for d in dims if x.ndim}
    if any(bool((s.abs() < tolerance).all()) for s in sums.values()) and not bool((x > tolerance).any()):
        return False  # log-probabilities along some axis
    dim = dims[0]
    total = sums[dim].exp() if sums else x.exp()
    probabilities = _probability_rows(x, dim)
    if probabilities:
        what = "probabilities (rows in [0, 1] summing to 1), not their log"
        fix = "Take the log-probabilities: `log_softmax` of the logits (or `torch.log(p)` of these probabilities)."
    elif bool((x > 0).any()):
        what = f"raw scores (values up to {float(x.max()):.3g}; log-probabilities are <= 0)"
        fix = "Apply `log_softmax(dim=1)` to the logits first (e.g. end the model with `nn.LogSoftmax(dim=1)`)."
    else:
        what = (f"values <= 0 that are not normalised: their exp sums to {float(total.min()):.3g}.."
                f"{float(total.max()):.3g} per row instead of 1")
        fix = "Normalise with `log_softmax` over the class axis."
    if call.name == "nll_loss":
        fix += " Or use `CrossEntropyLoss` on the logits, which does both."
    penalty = ("NLLLoss only picks -input[target], so it is minimised by pushing that one number to +inf, not by "
               "learning the classes" if call.name == "nll_loss" else "KL divergence on such inputs is not a "
               "divergence: it can go negative and its minimum is not the target distribution")
    ctx.emit("LOS002", f"{_loss_name(call)} expects log-probabilities, but its input ({_shape(call.input)}) holds "
                       f"{what}{_from(call.origin)}. {penalty}.",
             location=_where(ctx, call, call.origin),
             evidence={**_value_evidence(call.input), "loss": MODULE_OF[call.name]},
             suggestions=[fix])
    return True


def _single_unit(ctx: Context, call: LossCall) -> bool:
    """Softmax (or cross-entropy) over one unit: its output is constant, so nothing is learnt."""
    x = call.input
    origin = call.origin
    normalised_one = origin is not None and origin.op in ("softmax", "log_softmax") and origin.dim_size == 1
    one_class = call.name == "cross_entropy" and x.ndim >= 2 and x.shape[1] == 1
    if not (normalised_one or one_class):
        return False
    if normalised_one:
        what = (f"{origin.site.describe()} applies {origin.op} over a dimension of size 1, which always gives "
                f"{'1' if origin.op == 'softmax' else '0'}: the output cannot depend on the input")
    else:
        what = (f"{_loss_name(call)} gets one output unit ({_shape(x)}): over a single class its softmax is always 1, "
                "so the loss is constant and gives no gradient")
    ctx.emit("LOS003", f"{_sentence(what)}; the loss is {_mean(call.value):.4g} whatever the "
                       "model does.",
             location=_where(ctx, call, origin if normalised_one else None),
             evidence={"loss": MODULE_OF[call.name], "input_shape": list(x.shape),
                       "value": _mean(call.value)},
             suggestions=["For two classes with one output unit use `nn.BCEWithLogitsLoss()` on the raw output (no "
                          "softmax); for C classes give the last layer C outputs.",
                          "If the softmax runs over the wrong axis, use the class axis (`dim=1` or `dim=-1`)."])
    return True


def _unreachable_targets(ctx: Context, call: LossCall) -> bool:
    """An output activation that cannot produce the targets (sigmoid for targets beyond (0, 1), softmax
    for multi-label rows, a ReLU before a logits loss)."""
    origin = call.origin
    y = call.target
    if origin is None or origin.op not in RANGE or origin.complement:
        return False
    if call.name in LOGIT_LOSSES and origin.op in ("relu", "relu6", "softplus"):
        return _relu_before_logits(ctx, call)
    if not isinstance(y, torch.Tensor) or not y.is_floating_point() or y.shape != call.input.shape:
        return False
    if call.name not in REGRESSION | BINARY:
        return False
    yf = y.float()[torch.isfinite(y.float())]
    if origin.op == "softmax" and call.input.ndim >= 2:
        sums = y.float().sum(_class_dim(call.input))
        off = float(((sums - 1).abs() > 1e-2).float().mean())
        if off <= UNREACHABLE:
            return False
        ctx.emit("LOS003",
                 f"{origin.site.describe()} makes softmax rows that sum to 1, but the targets' rows sum to "
                 f"{float(sums.min()):.3g}..{float(sums.max()):.3g} ({off:.0%} of them not 1, e.g. several labels per "
                 f"sample): a softmax output cannot reach them, whatever {_loss_name(call)} does.",
                 location=_where(ctx, call, origin),
                 evidence={"row_sums": [float(sums.min()), float(sums.max())], "rows_not_one": off},
                 suggestions=["For several labels per sample remove the softmax and use `nn.BCEWithLogitsLoss()` "
                              "(one independent sigmoid per label)."])
        return True
    low, high = RANGE[origin.op]
    if call.name in BINARY and origin.op == "sigmoid":
        return False  # target range is DAT003's
    outside = float(((yf < low - 1e-6) | (yf > high + 1e-6)).float().mean()) if yf.numel() else 0.0
    if outside <= UNREACHABLE:
        return False
    span = f"[{low:g}, {high:g}]" if math.isfinite(high) else f"[{low:g}, inf)"
    ctx.emit("LOS003",
             f"{origin.site.describe()} bounds the output to {span}, but {outside:.0%} of the targets of "
             f"{_loss_name(call)} lie outside it (targets span [{float(yf.min()):.4g}, {float(yf.max()):.4g}]): the "
             "model cannot reach them and the loss cannot get near zero.",
             location=_where(ctx, call, origin),
             evidence={"activation": origin.op, "reach": [low, high], "target_min": float(yf.min()),
                       "target_max": float(yf.max()), "targets_out_of_reach": outside},
             suggestions=[f"Remove the {origin.op} so the output is linear, or scale the targets into {span} "
                          "(and back at inference)."])
    return True


def _relu_before_logits(ctx: Context, call: LossCall) -> bool:
    origin = call.origin
    if call.name == "binary_cross_entropy_with_logits":
        consequence = ("the logits are >= 0, so sigmoid(logit) >= 0.5: the model can never predict the negative "
                       "class")
        severity = None
    else:
        consequence = ("the logits are >= 0, and a class whose logit is cut to 0 gets no gradient: the model cannot "
                       "push wrong classes down, and dead units never recover")
        severity = "warning"
    x = call.input
    zeros = float((x == 0).float().mean())
    ctx.emit("LOS003", f"{_loss_name(call)} takes raw logits, but its input comes from {origin.site.describe()}"
                       f", which makes {zeros:.0%} of the logits exactly 0: {consequence}.",
             location=_where(ctx, call, origin), severity=severity,
             evidence={"activation": origin.op, "zero_logits": zeros, "loss": MODULE_OF[call.name]},
             suggestions=[_remove_fix(origin)])
    return True


def _targets_mismatch(ctx: Context, call: LossCall) -> bool:
    """Targets of another kind than the loss expects: class indices into a regression loss or BCE,
    continuous or multi-label targets into cross-entropy."""
    y = call.target
    if not isinstance(y, torch.Tensor) or not y.numel():
        return False
    yf = y.detach().float()
    if not bool(torch.isfinite(yf).all()):
        return False  # DAT002's
    integral = bool((yf == yf.round()).all())
    values = torch.unique(yf) if integral else None
    if call.name in REGRESSION and integral and ctx.setup.task != "regression":
        k = len(values)
        indices = 3 <= k <= 100 and bool((values == torch.arange(k, dtype=values.dtype, device=values.device)).all())
        if indices and call.input.numel() == y.numel():
            ctx.emit("LOS003",
                     f"{_loss_name(call)} gets targets that look like class indices (every value an integer "
                     f"0..{k - 1}, {k} distinct) and one output per sample: regression on class indices treats "
                     f"class {k - 1} as 'more' than class 1 and predicts in-between values that are no class.",
                     location=_where(ctx, call, None), severity="warning",
                     evidence={"distinct_targets": k, "loss": MODULE_OF[call.name]},
                     suggestions=[f"For classes use {k} output units and `nn.CrossEntropyLoss()` with long targets.",
                                  "If the values are ordered quantities (ratings, counts), ignore this."])
            return True
    if call.name in BINARY and integral and float(yf.max()) >= 2 and float(yf.min()) >= 0 and not ctx.has("DAT003"):
        ctx.emit("LOS003",
                 f"{_loss_name(call)} gets targets with values 0..{int(yf.max())}: class indices, not the 0/1 labels "
                 "a binary loss needs.",
                 location=_where(ctx, call, None),
                 evidence={"target_max": float(yf.max()), "loss": MODULE_OF[call.name]},
                 suggestions=["For one class per sample use `nn.CrossEntropyLoss()` with one output per class.",
                              "For several labels per sample one-hot them: `F.one_hot(y, C).float()`."])
        return True
    if call.name == "cross_entropy" and y.is_floating_point() and y.shape == call.input.shape and y.ndim >= 2:
        dim = _class_dim(call.input)
        sums = yf.sum(dim)
        in_unit = bool(((yf >= 0) & (yf <= 1)).all())
        off = float(((sums - 1).abs() > 1e-2).float().mean())
        if in_unit and off <= UNREACHABLE:
            return False  # class probabilities (one-hot, soft or smoothed labels)
        what = (f"multi-label rows (values in [0, 1], rows summing to {float(sums.min()):.3g}..{float(sums.max()):.3g})"
                if in_unit else f"continuous values in [{float(yf.min()):.4g}, {float(yf.max()):.4g}]")
        ctx.emit("LOS003",
                 f"{_loss_name(call)} with float targets of the output's shape treats each target row as a class "
                 f"distribution, but these targets are {what}.",
                 location=_where(ctx, call, None),
                 evidence={"target_min": float(yf.min()), "target_max": float(yf.max()), "rows_not_one": off},
                 suggestions=["Several labels per sample: `nn.BCEWithLogitsLoss()`." if in_unit else
                              "Continuous targets: a regression loss (`nn.MSELoss()`) on a linear output.",
                              "Class indices: pass them as a long tensor of shape (N,)."])
        return True
    return False


_JUDGES = [_probabilities_into_logits, _not_log_probabilities, _single_unit, _unreachable_targets, _targets_mismatch]


def _explained(ctx: Context) -> set[int]:
    """Indices of the loss calls that LOS001-LOS003 already explained (LOS004 would only repeat them)."""
    return ctx.measure("loss:explained", set)


# ----- shared wording and measurements ------------------------------------------------------------


def _mean(loss: torch.Tensor) -> float:
    return float(loss.float().mean())  # a loss with reduction="none" counts as its mean


def _class_dim(x: torch.Tensor) -> int:
    return 1 if x.ndim >= 2 else 0


def _probability_rows(x: torch.Tensor, dim: int) -> bool:
    """Every value in [0, 1] and every row along ``dim`` summing to 1 (over at least two classes)."""
    if not x.ndim or x.shape[dim] < 2 or not x.numel():
        return False
    xf = x.float()
    return bool(((xf >= 0) & (xf <= 1)).all()) and bool(((xf.sum(dim) - 1).abs() < ROW_SUM_TOLERANCE).all())


def _squashing(origin: Origin | None) -> Origin | None:
    """The origin when it made probabilities (softmax over several units, or sigmoid)."""
    if origin is None or origin.complement:
        return None
    if origin.op == "sigmoid" or (origin.op == "softmax" and origin.dim_size != 1):
        return origin
    return None


def _remove_fix(origin: Origin) -> str:
    site = origin.site
    if site.module is not None and site.leaf:
        return f"Remove model.{site.module} ({site.module_type}) from the model: the loss takes the values before it."
    if origin.hand_written:
        return f"Drop the hand-written softmax at {site.source} and pass the logits."
    return f"Drop the `{origin.op}` at {site.source or 'the end of the forward'} and pass the values before it."


def _where(ctx: Context, call: LossCall, origin: Origin | None) -> str:
    outside = "loss_fn" if ctx.setup.step is None else "step"
    if origin is not None:
        return origin.site.location(outside)
    return call.site.location(outside)


def _from(origin: Origin | None) -> str:
    if origin is None:
        return ""
    if origin.op == "affine":
        return f" (the raw output of {origin.site.describe()})"
    return f" (made by {origin.op} in {origin.site.describe()})"


def _sentence(text: str) -> str:
    """Capitalised to start a sentence, unless it starts with a module path ("model.3")."""
    return text if text.startswith("model") else text[0].upper() + text[1:]


def _loss_name(call: LossCall) -> str:
    return f"`{MODULE_OF[call.name]}`"


def _shape(x: torch.Tensor) -> str:
    return f"shape {tuple(x.shape)}"


def _value_evidence(x: torch.Tensor) -> dict[str, Any]:
    xf = x.float()
    return {"input_shape": list(x.shape), "input_min": float(xf.min()), "input_max": float(xf.max())}
