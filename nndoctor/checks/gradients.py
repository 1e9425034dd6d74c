"""Gradient flow, measured during the single-batch experiment of the overfit step (no training of its own).

Per parameter and step: the gradient norm (or none), the weight norm and the update norm
(probes/grad_stats.py). One forward pass with hooks says which modules ran, in what order, and where
gradient history was cut. From these:
  - GRD001: parameters that require grad but never get one (detached, under no_grad, or unused);
  - GRD002: parameters that get gradients but never change (not in the optimizer, lr 0);
  - GRD003: gradients that blow up, or updates larger than the weights;
  - GRD004: early layers whose relative gradients are orders of magnitude below a later layer's.
Parameters frozen with ``requires_grad=False`` are never judged.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from nndoctor.checks import check
from nndoctor.checks.overfit_experiment import Experiment, experiment
from nndoctor.checks.verified_fixes import verify_fixes
from nndoctor.context import Context
from nndoctor.findings import Finding
from nndoctor.probes.grad_stats import GradReach

GROWTH = 100.0  # the total gradient norm growing a hundredfold from the first step (correct models: < 2x)
RATIO = 1.0  # an update larger than the weight itself (correct models: < 0.2 on their weight matrices)
RATIO_STEPS = 3  # ... in at least this many steps: not a one-off from a tiny initial weight
VANISHING = 1e-4  # relative gradient ten thousand times below a later layer's (a plain 10-layer ReLU MLP: 1e-3)
EARLY_STEPS = 20  # vanishing gradients are judged over the first steps (before the model has fitted)
SPARSE_GRADIENT_MODULES = (nn.Embedding, nn.EmbeddingBag)  # rows not in the batch get no gradient by design


@dataclass
class Flow:
    """The experiment's gradient measurements, per trainable parameter, with their modules."""

    names: list[str]
    shapes: list[tuple[int, ...]]
    owners: list[str]  # module path of each parameter
    grad: np.ndarray  # (steps, params) gradient norms, NaN: no gradient (or a NaN one)
    has_grad: np.ndarray  # (steps, params) whether a gradient was set
    weight: np.ndarray  # (steps, params) weight norms before each step
    update: np.ndarray  # (steps, params) update norms
    order: dict[str, int]  # module path -> position of its first call in the forward pass
    reach: GradReach

    @property
    def steps(self) -> int:
        return self.grad.shape[0]

    def rank(self, i: int) -> int:
        """Forward position of parameter ``i``'s module (modules that never ran go last)."""
        return self.order.get(self.owners[i], len(self.order))


def gradient_flow(ctx: Context) -> tuple[Experiment, Flow]:
    exp = experiment(ctx)
    return exp, ctx.measure("gradient_flow", lambda: _measure(ctx, exp))


def _measure(ctx: Context, exp: Experiment) -> Flow:
    stats = exp.grads
    model = ctx.fresh_model().train()
    with torch.random.fork_rng(devices=[]), GradReach(model) as reach:
        try:
            ctx.loss_of(model, exp.batch)
        except Exception:  # noqa: BLE001 - the experiment ran this forward already; order is a nicety
            pass
    order = {path: m.order for path, m in reach.modules.items()}
    return Flow(stats.names, stats.shapes, [n.rpartition(".")[0] for n in stats.names],
                stats.grad_norm, stats.has_grad, stats.weight_norm, stats.update_norm, order, reach)


@check("gradient-flow", step="overfit", codes=("GRD001", "GRD002", "GRD003", "GRD004"))
def gradient_flow_check(ctx: Context) -> None:
    """Judge the gradients recorded while overfitting one batch."""
    exp, flow = gradient_flow(ctx)
    n_before = len(ctx.findings)
    _no_gradient(ctx, exp, flow)
    _not_updated(ctx, exp, flow)
    _exploding(ctx, exp, flow)
    _vanishing(ctx, exp, flow)
    new = ctx.findings[n_before:]
    ctx.extras["gradients"] = {"layers": _layers(flow)}
    _explain_plateau(ctx, new)
    verify_fixes(ctx, new)
    exp.release()


# ----- GRD001 -----------------------------------------------------------------------------------------
def _no_gradient(ctx: Context, exp: Experiment, flow: Flow) -> None:
    silent = [i for i in range(len(flow.names)) if np.all(~flow.has_grad[:, i] | (flow.grad[:, i] == 0))]
    if not silent:
        return
    never_none = {i for i in silent if flow.has_grad[:, i].any()}  # a gradient was set, but exactly zero
    for unit, (members, whole) in _units(flow, silent).items():
        reach = flow.reach.modules.get(unit)
        where = f"model.{unit}" if unit else "model"
        tensors = ", ".join(flow.names[i] for i in members[:6]) + (" ..." if len(members) > 6 else "")
        severity = None
        if not whole:  # the module runs and its other parameters learn: these ones are left out
            cause = "the module runs and its other parameters learn, but these are not used in its computation"
            fix = f"Use them in {where}'s forward, delete them, or freeze them with requires_grad_(False)."
            severity = "warning"
        elif reach is None:
            cause = "it never runs in the forward pass: an unused module or branch"
            fix = f"Use {where} in forward, or delete it (or freeze it with requires_grad_(False))."
            severity = "warning"
        elif not reach.output_requires_grad:
            cause = "it runs, but its output has no gradient history: its forward runs under torch.no_grad()"
            fix = f"Remove the torch.no_grad() around {where}; to freeze it, use requires_grad_(False) instead."
        elif reach.detached_into:
            cause = (f"its output reaches model.{reach.detached_into} without gradient history: it is detached "
                     "(`.detach()`, `.data`, or a round trip through numpy) on the way")
            fix = f"Remove the `.detach()` after {where}; to freeze it, use requires_grad_(False) instead."
        elif all(i in never_none for i in members):
            cause = "its gradient is exactly zero at every step (it is multiplied by zero, or its units are all dead)"
            fix = "Check how its output enters the loss (a zero mask or factor), and its activations (NUM004)."
            severity = "warning"  # a zero loss weight can be deliberate
        else:
            cause = "it runs, but its output does not reach the loss"
            fix = f"Use {where}'s output in the loss, or freeze it with requires_grad_(False)."
            severity = "warning"
        size = sum(math.prod(flow.shapes[i]) for i in members)
        ctx.emit("GRD001",
                 f"{where} ({_kind(exp.baseline.model, unit)}) has {_tensors(len(members))} ({size:,} values) that "
                 f"require grad but got no gradient in {flow.steps} training steps ({tensors}): {cause}. "
                 "Its weights never learn.",
                 location=where, severity=severity,
                 evidence={"parameters": [flow.names[i] for i in members], "values": size, "steps": flow.steps,
                           "called": reach is not None, "output_requires_grad": bool(reach and reach.output_requires_grad),
                           "detached_into": f"model.{reach.detached_into}" if reach and reach.detached_into else None},
                 suggestions=[fix])


def _units(flow: Flow, members: list[int]) -> dict[str, tuple[list[int], bool]]:
    """Group parameters under the highest module whose trainable parameters are all in ``members``
    (-> members, True), else under their own module (-> members, False: it has others that learn)."""
    chosen = set(members)
    by_path: dict[str, set[int]] = {}
    for i, owner in enumerate(flow.owners):
        parts = owner.split(".") if owner else []
        for depth in range(len(parts) + 1):
            by_path.setdefault(".".join(parts[:depth]), set()).add(i)
    units: dict[str, list[int]] = {}
    for i in members:
        parts = flow.owners[i].split(".") if flow.owners[i] else []
        unit = flow.owners[i]
        for depth in range(len(parts) + 1):  # the shallowest ancestor made only of silent parameters
            path = ".".join(parts[:depth])
            if (path or len(members) == len(flow.names)) and by_path[path] <= chosen:
                unit = path
                break
        units.setdefault(unit, []).append(i)
    ordered = sorted(units.items(), key=lambda kv: flow.order.get(kv[0], len(flow.order)))
    return {unit: (idx, by_path[unit] <= chosen) for unit, idx in ordered}


def _kind(model: nn.Module, path: str) -> str:
    try:
        return type(model.get_submodule(path)).__name__
    except AttributeError:
        return "module"


# ----- GRD002 -----------------------------------------------------------------------------------------
def _not_updated(ctx: Context, exp: Experiment, flow: Flow) -> None:
    got_grad = (np.nan_to_num(flow.grad) > 0).any(axis=0)
    frozen = [i for i in range(len(flow.names)) if got_grad[i] and not np.any(flow.update[:, i] > 0)]
    if not frozen:
        return
    optimizer = exp.baseline.optimizer
    params = exp.grads.params
    in_optimizer = {id(p): group for group in optimizer.param_groups for p in group["params"]}
    ours = [i for i in range(len(params)) if id(params[i]) in in_optimizer]
    held = sum(len(g["params"]) for g in optimizer.param_groups)
    everything = len(frozen) == len(flow.names)
    if not ours and held:
        ctx.emit("GRD002",
                 f"The optimizer holds {_tensors(held)}, none of them this model's: it was built for a "
                 f"different model (or before the model was re-created or copied). In {flow.steps} steps no parameter "
                 "of the model changed, although all got gradients.",
                 location="optimizer", evidence={"optimizer_tensors": held, "model_tensors": len(params),
                                                 "steps": flow.steps, "unchanged": len(frozen)},
                 suggestions=["Build the optimizer from the model you train: "
                              f"`torch.optim.{type(optimizer).__name__}(model.parameters(), ...)`, after the model "
                              "is created and moved to its device."])
        return
    missing = [i for i in frozen if id(params[i]) not in in_optimizer]
    zero_lr = [i for i in frozen if id(params[i]) in in_optimizer and in_optimizer[id(params[i])].get("lr") == 0]
    for members, cause, fix in (
        (missing, "they are not in the optimizer", "Pass every trainable parameter to the optimizer (or freeze these "
                                                   "with requires_grad_(False) if that is the intent)."),
        (zero_lr, "their parameter group has a learning rate of 0", "Give their group a learning rate above 0 (or "
                                                                    "freeze them with requires_grad_(False))."),
    ):
        if not members:
            continue
        modules = sorted({flow.owners[i] for i in members}, key=lambda m: flow.order.get(m, len(flow.order)))
        where = ", ".join(f"model.{m}" if m else "model" for m in modules[:6]) + (" ..." if len(modules) > 6 else "")
        ctx.emit("GRD002",
                 f"{_tensors(len(members))} of {where} got gradients but did not change in {flow.steps} steps: "
                 f"{cause}.",
                 location=f"model.{modules[0]}" if modules[0] else "model",
                 severity=None if everything else "warning",
                 evidence={"parameters": [flow.names[i] for i in members], "steps": flow.steps},
                 suggestions=[fix])


# ----- GRD003 -----------------------------------------------------------------------------------------
def _exploding(ctx: Context, exp: Experiment, flow: Flow) -> None:
    if not flow.steps or not np.any(flow.update > 0):
        return  # nothing moved (GRD002): growing gradients are ones never zeroed, not an explosion
    present = np.where(flow.has_grad, flow.grad, 0.0)  # real NaN/Inf norms stay
    total = np.sqrt(np.sum(present**2, axis=1))  # (steps,) total gradient norm
    first = total[0]
    blew = not np.isfinite(total).all()
    grew = not blew and first > 0 and total.max() >= GROWTH * first
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = flow.update / flow.weight  # (steps, params)
    matrices = [i for i in range(len(flow.names)) if len(flow.shapes[i]) >= 2 and flow.weight[0, i] > 0]
    big = [i for i in matrices if int(np.sum(ratio[:, i] > RATIO)) >= RATIO_STEPS]
    if not (grew or blew or big):
        return
    layers = [{"name": f"model.{flow.owners[i]}", "parameter": flow.names[i],
               "max_update_ratio": _g(np.nanmax(ratio[:, i])) if np.isfinite(ratio[:, i]).any() else None,
               "steps_over_1": int(np.sum(ratio[:, i] > RATIO)),
               "max_grad_norm": _g(np.nanmax(flow.grad[:, i])) if np.isfinite(flow.grad[:, i]).any() else None}
              for i in (big or sorted(matrices, key=lambda i: -np.nan_to_num(flow.grad[:, i], nan=np.inf).max())[:3])]
    parts = []
    if blew:
        parts.append(f"the gradient became NaN/Inf at step {int(np.argmax(~np.isfinite(total)))}")
    elif grew:
        parts.append(f"the total gradient norm grew from {_g(first)} to {_g(total.max())} ({total.max() / first:.3g}x)")
    if big:
        parts.append(f"{len(big)} layers had updates larger than their weights in at least {RATIO_STEPS} of "
                     f"{flow.steps} steps ({', '.join(layer['name'] for layer in layers[:4])})")
    ctx.emit("GRD003", "While overfitting one batch, " + "; ".join(parts) + ".",
             location=layers[0]["name"] if layers else "model",
             evidence={"layers": layers, "total_grad_norm": [_g(v) for v in total[:: max(1, flow.steps // 50)]],
                       "steps": flow.steps},
             suggestions=["Lower the learning rate (see OFB002/OFB003 for a confirmed value).",
                          "Clip gradients: `torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)` before `step()`."])


# ----- GRD004 -----------------------------------------------------------------------------------------
def _vanishing(ctx: Context, exp: Experiment, flow: Flow) -> None:
    model = exp.baseline.model
    early = slice(0, min(EARLY_STEPS, flow.steps))
    candidates = []
    for i, name in enumerate(flow.names):
        if len(flow.shapes[i]) < 2 or _is_sparse_by_design(model, flow.owners[i]):
            continue
        with np.errstate(divide="ignore", invalid="ignore"):
            relative = flow.grad[early, i] / flow.weight[early, i]
        relative = relative[np.isfinite(relative)]
        if relative.size and np.median(relative) > 0:  # no gradient at all is GRD001's
            candidates.append((flow.rank(i), i, float(np.median(relative))))
    candidates.sort()
    flagged = []
    for pos, (rank, i, rel) in enumerate(candidates):
        later = [r for rk, _, r in candidates[pos + 1:] if rk > rank]
        if later and max(later) > 0 and rel <= VANISHING * max(later):
            flagged.append((i, rel, max(later)))
    if not flagged:
        return
    best = max(r for _, _, r in candidates)
    layers = [{"name": f"model.{flow.owners[i]}", "parameter": flow.names[i], "relative_grad": _g(rel),
               "ratio_to_best": _g(rel / best)} for i, rel, _ in flagged]
    listing = ", ".join(f"{layer['name']} ({layer['ratio_to_best']:.1e})" for layer in layers[:6])
    ctx.emit("GRD004",
             f"Gradients vanish in early layers: |grad|/|weight| over the first {early.stop} steps is at least "
             f"{1 / VANISHING:.0f}x below a later layer's. Ratio to the best-learning layer: {listing}"
             + (" ..." if len(layers) > 6 else "") + ".",
             location=layers[0]["name"],
             evidence={"layers": layers, "best_relative_grad": _g(best), "steps": early.stop},
             suggestions=["Use ReLU/GELU instead of sigmoid/tanh in hidden layers, add normalisation or residual "
                          "connections, and an initialisation suited to the activation."])


def _is_sparse_by_design(model: nn.Module, path: str) -> bool:
    try:
        return isinstance(model.get_submodule(path), SPARSE_GRADIENT_MODULES)
    except AttributeError:
        return False


# ----- for the report ---------------------------------------------------------------------------------
def _layers(flow: Flow) -> list[dict]:
    """Per module, in forward order: median total gradient norm and median update/weight ratio."""
    rows = []
    for owner in sorted(set(flow.owners), key=lambda m: flow.order.get(m, len(flow.order))):
        idx = [i for i, o in enumerate(flow.owners) if o == owner]
        grad = np.sqrt(np.nansum(flow.grad[:, idx] ** 2, axis=1))
        weight = np.sqrt(np.sum(flow.weight[:, idx] ** 2, axis=1))
        update = np.sqrt(np.sum(flow.update[:, idx] ** 2, axis=1))
        with np.errstate(divide="ignore", invalid="ignore"):
            ratio = update / weight
        rows.append({"name": f"model.{owner}" if owner else "model", "grad_norm": _median(grad),
                     "update_ratio": _median(ratio)})
    return rows


def _median(values: np.ndarray) -> float | None:
    finite = values[np.isfinite(values)]
    return _g(float(np.median(finite))) if finite.size else None


def _explain_plateau(ctx: Context, new: list[Finding]) -> None:
    """A stalled single-batch run (OFB004) with broken gradient flow: say so on the OFB004 finding."""
    causes = sorted({f.code for f in new if f.code in ("GRD001", "GRD002", "GRD004") and f.severity.value != "info"})
    for finding in ctx.findings:
        if finding.code == "OFB004" and causes:
            finding.evidence["gradient_flow"] = causes
            finding.message += f" Gradient flow explains it: see {', '.join(causes)}."


def _tensors(n: int) -> str:
    return f"{n} parameter tensor{'' if n == 1 else 's'}"


def _g(v: float) -> float:
    return float(f"{v:.3g}") if math.isfinite(v) else v
