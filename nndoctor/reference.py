"""Compare a model with a reference implementation, layer by layer (CMP004).

``compare_models(model, reference, inputs)`` loads the reference's weights into a copy of the model
where the state dicts map (by name, else by order and shape), runs both copies in eval mode on the
same inputs, matches their layers (by name, else by order and output shape) and names the first layer
whose output diverges while its inputs still agree: the layer whose code differs. This is how a
re-implementation of a known model is debugged against the official one.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from difflib import SequenceMatcher
from typing import Any

import torch
from torch import nn

from nndoctor.data import call_model, to_device
from nndoctor.findings import CheckRecord, Finding
from nndoctor.report.model import Report
from nndoctor.probes.activations import Activation, RecordActivations
from nndoctor.sandbox import copy_model, preserved_rng, seed_all
from nndoctor.spec import SetupError

RTOL = 1e-3  # relative to the reference's largest magnitude at that layer: float32 re-orderings stay far below
ATOL = 1e-6


@dataclass
class Diff:
    max_abs: float
    relative: float  # max_abs / the reference's largest magnitude
    diverged: bool


@dataclass
class LayerDiff:
    path: str  # in the model ("" is the model itself)
    ref_path: str  # in the reference
    module: nn.Module
    ref_module: nn.Module
    inputs: Diff | None  # None: the inputs cannot be compared (different number or shapes)
    outputs: Diff | None

    def row(self) -> dict[str, Any]:
        return {"layer": _qualified("model", self.path), "reference": _qualified("reference", self.ref_path),
                "type": type(self.module).__name__, "reference_type": type(self.ref_module).__name__,
                "input_max_abs_diff": self.inputs.max_abs if self.inputs else None,
                "output_max_abs_diff": self.outputs.max_abs if self.outputs else None,
                "output_relative_diff": self.outputs.relative if self.outputs else None}


@dataclass
class ReferenceDiff:
    layers: list[LayerDiff]  # matched layers, in the model's completion order (children before parents)
    matching: str  # how layers were matched
    weights: dict[str, Any] = field(default_factory=dict)  # what was loaded from the reference
    samples: int = 0

    @property
    def first_divergent(self) -> LayerDiff | None:
        return next((d for d in self.layers if d.outputs is None or d.outputs.diverged), None)

    @property
    def culprit(self) -> LayerDiff | None:
        """The first layer whose inputs agree with the reference's while its outputs do not."""
        return next((d for d in self.layers if d.inputs is not None and not d.inputs.diverged
                     and (d.outputs is None or d.outputs.diverged)), None)


def compare_models(model: nn.Module, reference: nn.Module, inputs: Any, *, rtol: float = RTOL, atol: float = ATOL,
                   load_weights: bool = True) -> Report:
    """Run ``model`` and ``reference`` (copies, eval mode) on ``inputs`` and report the first layer whose
    output diverges beyond ``rtol``/``atol`` (CMP004), with the magnitudes.

    ``inputs`` is what the model is called with: a tensor, a tuple (``model(*inputs)``) or a dict
    (``model(**inputs)``). With ``load_weights`` the reference's weights are first loaded into the copy
    of ``model`` wherever the state dicts map; neither model is changed.
    """
    for name, value in (("model", model), ("reference", reference)):
        if not isinstance(value, nn.Module):
            raise SetupError(f"compare_models: {name} must be a torch.nn.Module, got {type(value).__name__}")
    start = time.monotonic()
    diff = diff_models(model, reference, inputs, rtol=rtol, atol=atol, load_weights=load_weights)
    findings = [Finding(**kwargs) for kwargs in divergence_findings(diff, rtol=rtol, atol=atol)]
    bad = sorted({f.code for f in findings if f.severity.value != "info"})
    record = CheckRecord("compare-models", "failed" if bad else "passed", time.monotonic() - start, ", ".join(bad),
                         "compare")
    return Report(findings=findings, checks=[record], meta={"seconds": round(time.monotonic() - start, 3)})


def diff_models(model: nn.Module, reference: nn.Module, inputs: Any, *, rtol: float = RTOL, atol: float = ATOL,
                load_weights: bool = True) -> ReferenceDiff:
    """Measure the layer-by-layer differences between copies of ``model`` and ``reference``."""
    with preserved_rng():
        mine, theirs = copy_model(model).eval(), copy_model(reference).eval()
        weights = load_reference_weights(mine, theirs) if load_weights else {"loaded": 0}
        runs = []
        for net in (mine, theirs):
            seed_all(0)  # the same random stream for both, should either draw random numbers in eval mode
            with torch.no_grad(), RecordActivations(net) as rec:
                call_model(net, to_device(inputs, _device_of(net)))
            runs.append(rec.finished)
    pairs, matching = match_layers(*runs)
    layers = [LayerDiff(a.path, b.path, a.module, b.module, tensor_diff(a.inputs, b.inputs, rtol, atol),
                        tensor_diff(a.outputs, b.outputs, rtol, atol)) for a, b in pairs]
    samples = next((len(a.inputs[0]) for a in runs[0] if a.path == "" and a.inputs and a.inputs[0].ndim), 0)
    return ReferenceDiff(layers, matching, weights, samples)


def map_weights(state: dict[str, torch.Tensor], ref_state: dict[str, torch.Tensor]) -> dict[str, str]:
    """Model key -> reference key: the same name and shape first, then the rest aligned by order and shape."""
    def signature(t: torch.Tensor) -> tuple:
        return tuple(t.shape), t.is_floating_point()

    mapping = {k: k for k, v in state.items() if k in ref_state and signature(ref_state[k]) == signature(v)}
    rest = [k for k in state if k not in mapping]
    ref_rest = [k for k in ref_state if k not in mapping]
    matcher = SequenceMatcher(None, [signature(state[k]) for k in rest], [signature(ref_state[k]) for k in ref_rest],
                              autojunk=False)
    for block in matcher.get_matching_blocks():
        for i in range(block.size):
            mapping[rest[block.a + i]] = ref_rest[block.b + i]
    return mapping


def load_reference_weights(model: nn.Module, reference: nn.Module) -> dict[str, Any]:
    """Copy the reference's weights into ``model`` (a copy) where they map; says what was loaded."""
    state, ref_state = model.state_dict(), reference.state_dict()
    mapping = map_weights(state, ref_state)
    by_order = {k: r for k, r in mapping.items() if k != r}
    changed = {k: r for k, r in mapping.items() if not torch.equal(state[k], ref_state[r].to(state[k].device))}
    if changed:
        model.load_state_dict({**state, **{k: ref_state[r].to(state[k]) for k, r in changed.items()}})
    unmapped = [f"{k} {tuple(v.shape)}" for k, v in state.items() if k not in mapping]
    return {"tensors": len(state), "mapped": len(mapping), "loaded": len(changed), "mapped_by_order": len(by_order),
            "by_order_examples": [f"{k} <- {r}" for k, r in list(by_order.items())[:5]], "unmapped": unmapped[:10]}


def match_layers(calls: list[Activation], ref_calls: list[Activation]) -> tuple[list[tuple[Activation, Activation]], str]:
    """Pairs of module calls that correspond, in the model's completion order: by name when most leaf
    layers share their names and output shapes, else leaf layers by order and output shape, and
    containers whose leaf layers all pair with exactly the leaf layers of one reference container."""
    def shapes(call: Activation) -> tuple:
        return tuple(tuple(t.shape) for t in call.outputs)

    by_key = {(c.path, c.occurrence): c for c in ref_calls}
    named = [(c, by_key[(c.path, c.occurrence)]) for c in calls if (c.path, c.occurrence) in by_key]
    leaves = [c for c in calls if c.is_leaf]
    if 2 * sum(a.is_leaf and shapes(a) == shapes(b) for a, b in named) >= len(leaves):
        return named, "by name"  # layers of different shapes stay paired: their outputs count as diverged
    mine = sorted(leaves, key=lambda c: c.called)
    theirs = sorted((c for c in ref_calls if c.is_leaf), key=lambda c: c.called)
    matcher = SequenceMatcher(None, [shapes(c) for c in mine], [shapes(c) for c in theirs], autojunk=False)
    pairs = {id(mine[b.a + i]): theirs[b.b + i] for b in matcher.get_matching_blocks() for i in range(b.size)}
    ref_containers = {frozenset(map(id, _leaves_within(r, ref_calls))): r for r in ref_calls if not r.is_leaf}
    for call in calls:
        inner = _leaves_within(call, calls)
        if call.is_leaf or not inner or not all(id(leaf) in pairs for leaf in inner):
            continue
        ref = ref_containers.get(frozenset(id(pairs[id(leaf)]) for leaf in inner))
        if ref is not None and shapes(ref) == shapes(call):
            pairs[id(call)] = ref
    roots = [(c, r) for c in calls for r in ref_calls if c.path == r.path == ""]
    if roots and id(roots[0][0]) not in pairs:  # the models' outputs are always compared
        pairs[id(roots[0][0])] = roots[0][1]
    return [(c, pairs[id(c)]) for c in calls if id(c) in pairs], "by order and output shape"


def _leaves_within(call: Activation, calls: list[Activation]) -> list[Activation]:
    """The leaf calls made during ``call``: started after it, finished before it (``calls`` in completion order)."""
    end = next(i for i, c in enumerate(calls) if c is call)
    return [c for c in calls[:end] if c.is_leaf and c.called > call.called]


def tensor_diff(a: list[torch.Tensor], b: list[torch.Tensor], rtol: float, atol: float) -> Diff | None:
    """Largest absolute difference across matching tensors; None when their number or shapes differ."""
    if len(a) != len(b) or any(x.shape != y.shape for x, y in zip(a, b)):
        return None
    max_abs, scale = 0.0, 0.0
    for x, y in zip(a, b):
        if x.numel() == 0:
            continue
        x, y = x.double().cpu(), y.double().cpu()
        same = (x == y) | (x.isnan() & y.isnan())
        gap = torch.where(same, torch.zeros_like(x), (x - y).abs()).nan_to_num(nan=float("inf"))
        max_abs = max(max_abs, float(gap.max()))
        scale = max(scale, float(y.abs().nan_to_num(nan=0.0, posinf=0.0).max()))
    return Diff(max_abs, max_abs / scale if scale > 0 else (0.0 if max_abs == 0 else float("inf")),
                max_abs > atol + rtol * scale)


def divergence_findings(diff: ReferenceDiff, *, rtol: float = RTOL, atol: float = ATOL) -> list[dict[str, Any]]:
    """The CMP004 finding(s) for a measured diff, as keyword arguments for ``Finding``/``ctx.emit``."""
    evidence: dict[str, Any] = {"samples": diff.samples, "matching": diff.matching, "layers_compared": len(diff.layers),
                                "rtol": rtol, "atol": atol, "weights": diff.weights}
    culprit, first = diff.culprit, diff.first_divergent
    if first is None:
        worst = max((d.outputs.relative for d in diff.layers if d.outputs), default=0.0)
        evidence["largest_relative_diff"] = worst
        return [dict(code="CMP004", severity="info", location="model", evidence=evidence,
                     message=f"The model matches the reference: {len(diff.layers)} layers matched {diff.matching} agree "
                             f"within rtol={rtol:g} (largest relative difference {worst:.2g}).")]
    target = culprit or first
    index = diff.layers.index(target)
    agreeing = sum(1 for d in diff.layers[:index] if d.outputs is not None and not d.outputs.diverged)
    evidence["layers"] = [d.row() for d in diff.layers[max(0, index - 4):index + 4]]
    evidence["first_divergent_output"] = _qualified("model", first.path)
    where = f"{_qualified('model', target.path)} ({_short(target.module)})"
    theirs = f"{_qualified('reference', target.ref_path)} ({_short(target.ref_module)})"
    if target.outputs is None:
        what = "its outputs have different shapes from the reference's"
    else:
        what = (f"its outputs differ by up to {target.outputs.max_abs:.3g} (relative {target.outputs.relative:.2g}; "
                f"tolerance rtol={rtol:g}, atol={atol:g})")
    if target is culprit:
        same_in = f"max abs diff {target.inputs.max_abs:.2g}" if target.inputs else ""
        message = (f"Compared with the reference on the same {diff.samples} input samples (eval mode), the first layer "
                   f"that diverges is {where}, matched to {theirs}: its inputs agree ({same_in}) but {what}. "
                   f"The {agreeing} matched layers that ran before it agree.")
    else:
        message = (f"The model's activations diverge from the reference's at {where}, matched to {theirs}: {what}; "
                   "its inputs cannot be compared with the reference's, so the cause may lie just before it.")
    suggestions = _divergence_hints(target, diff)
    message += " " + suggestions.pop(0)
    return [dict(code="CMP004", severity="error", location=_qualified("model", target.path), message=message,
                 evidence=evidence, suggestions=suggestions)]


def _divergence_hints(target: LayerDiff, diff: ReferenceDiff) -> list[str]:
    """First: one sentence on the likely cause; then concrete suggestions."""
    own_keys = {f"{target.path}.{name}".lstrip(".") for name, _ in target.module.named_parameters()}
    unmapped = [u for u in diff.weights.get("unmapped", []) if u.split(" ")[0] in own_keys]
    if unmapped:
        cause = (f"Its weights could not be mapped from the reference ({', '.join(unmapped[:3])}), so they kept the "
                 "model's own values: the layer's shape differs from the reference's.")
    elif target.path == "" or any(True for _ in target.module.children()):
        owner = "the model's own forward()" if target.path == "" else f"the forward() of {_qualified('model', target.path)}"
        cause = (f"Its matched sub-layers agree, so the difference comes from code in {owner} between them "
                 "(a missing residual, scaling, transpose, mask or activation).")
    elif repr(target.module) != repr(target.ref_module):
        cause = f"The two modules differ: {_short(target.module)} vs {_short(target.ref_module)}."
    else:
        cause = "The modules look alike, so compare their weights and the code that calls them."
    hints = [cause, f"Read the forward code of {_qualified('model', target.path)} side by side with the reference's "
                    f"{_qualified('reference', target.ref_path)}."]
    if diff.weights.get("mapped_by_order"):
        hints.append("Some weights were mapped by order and shape, not by name "
                     f"({'; '.join(diff.weights['by_order_examples'][:3])}): if that mapping is wrong, load the "
                     "weights yourself and call compare_models(..., load_weights=False).")
    return hints


def _qualified(root: str, path: str) -> str:
    return f"{root}.{path}" if path else root


def _short(module: nn.Module) -> str:
    text = repr(module) if not any(True for _ in module.children()) else type(module).__name__
    return text if len(text) <= 80 else text[:77] + "..."


def _device_of(model: nn.Module) -> torch.device:
    return next((t.device for t in list(model.parameters()) + list(model.buffers())), torch.device("cpu"))
