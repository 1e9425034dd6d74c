"""Step 2, the values that reach the model: their scale at the first layer (DAT001) and NaN/Inf in any
split (DAT002). DAT001 runs the model's forward on the first batch to see what its first layer receives."""
from __future__ import annotations

from typing import Any

import torch

from nndoctor import data as D
from nndoctor.checks import SkipCheck, check
from nndoctor.checks.data_sample import (
    SPLIT_NAMES,
    position,
    split_location,
    split_scan,
    train_sample,
)
from nndoctor.context import Context
from nndoctor.probes.data_stats import (
    NORMALISATION,
    FeatureStats,
    FirstLayers,
    LayerCall,
    NonFinite,
    Scan,
    feature_stats,
    is_feature_tensor,
    named_leaves,
    shares_storage,
)

# ----- DAT001 ----------------------------------------------------------------------------------

LARGE = 20.0  # per-feature RMS above this is far from the unit scale layers are initialised for
HUGE = 100.0  # ... and above this, an error
TINY = 1e-2  # every feature's RMS below this: scaled twice (pixels / 255 / 255)?
SPREAD = 100.0  # largest feature RMS over the median one


@check("data-scale", step="bugs", codes=("DAT001",), needs_run=False, uses_model=False)
def input_scale(ctx: Context) -> None:
    """The scale of the inputs where they reach the model's first layer with weights."""
    pair = ctx.pair(ctx.first_batch())
    if pair is None:
        raise SkipCheck("batches are not (inputs, targets) pairs")
    leaves = [(name, t) for name, t in named_leaves(pair[0]) if is_feature_tensor(t) and len(t) > 1]
    if not leaves:
        raise SkipCheck("no floating-point inputs (token ids and other integers are not features)")
    calls = _first_layers(ctx, pair[0])
    only_input = len(D.tensors_in(pair[0])) == 1  # then whatever reaches the first layer comes from it
    for name, leaf in leaves:
        seen = _what_the_model_sees(leaf, calls, only_input)
        if seen is None:
            continue
        tensor, consumer = seen
        if consumer is not None and isinstance(consumer.module, NORMALISATION):
            continue  # the model normalises its inputs itself
        stats = feature_stats(tensor)
        problem = _scale_problem(stats)
        if problem:
            _report_scale(ctx, name, len(leaves), stats, consumer, not shares_storage(tensor, leaf), *problem)


def _first_layers(ctx: Context, inputs: Any) -> list[LayerCall] | None:
    """The model's first layer calls on the first batch; None when it crashes before any."""
    model = ctx.fresh_model().eval()
    with torch.no_grad(), FirstLayers(model) as layers:
        try:
            ctx.forward(model, inputs)
        except Exception:
            return layers.calls or None
    return layers.calls


def _what_the_model_sees(leaf: torch.Tensor, calls: list[LayerCall] | None,
                         only_input: bool) -> tuple[torch.Tensor, LayerCall | None] | None:
    """(tensor, layer call) for the first layer with weights that receives ``leaf`` (or a view of it);
    when ``leaf`` is the model's only input and it transforms it first, the first such layer's input."""
    if calls is None:
        return leaf, None  # the model does not run: judge the data as it is
    for call in calls:
        for t in call.inputs:
            if t.is_floating_point() and shares_storage(t, leaf):
                return t, call
    if only_input:
        for call in calls:
            for t in call.inputs:
                if t.is_floating_point() and t.ndim >= 1 and len(t) == len(leaf):
                    return t, call
    return None


def _scale_problem(stats: FeatureStats) -> tuple[str, str] | None:
    """(severity, what is wrong) or None."""
    live = stats.rms[stats.live]
    if not live.numel():
        return None
    top, middle = float(live.max()), float(live.median())
    if top >= LARGE:
        return ("error" if top >= HUGE else "warning",
                f"far above unit scale: feature RMS up to {top:.3g} (median {middle:.3g})")
    if top < TINY:
        return "warning", f"far below unit scale: every feature's RMS is at most {top:.2g}"
    if top >= 5.0 and top / middle >= SPREAD:
        return "warning", f"on wildly different scales: feature RMS up to {top:.3g} against a median of {middle:.3g}"
    return None


def _report_scale(ctx: Context, name: str, leaves: int, stats: FeatureStats, consumer: LayerCall | None,
                  transformed: bool,
                  severity: str, problem: str) -> None:
    pixels = stats.integer_valued and stats.low >= 0 and 1.5 < stats.high <= 255
    layer = f"model.{consumer.path}".rstrip(".") if consumer is not None else None
    plural = name == "inputs"
    where = "The inputs" if plural else f"Input {name}"
    if layer:
        where += (f" that {'reach' if plural else 'reaches'} {layer} ({type(consumer.module).__name__})"
                  + (" after the model's own transforms" if transformed else ""))
    message = (f"{where} {'are' if plural else 'is'} {problem}; values span [{stats.low:.4g}, {stats.high:.4g}] in {stats.samples} samples. "
               "Layers are initialised for inputs of roughly unit scale: far larger values saturate activations and "
               "blow up the first layer's gradients, far smaller ones barely move it.")
    if stats.tabular and stats.rms.numel() > 1:
        worst = torch.argsort(stats.rms, descending=True)[:3].tolist()
        message += " Largest: " + ", ".join(f"column {i} (RMS {float(stats.rms[i]):.3g})" for i in worst) + "."
    suggestions = []
    if pixels:
        message += " These look like raw 0-255 pixel values."
        suggestions.append("Scale pixels to [0, 1] (`x.float() / 255`, or `transforms.ToTensor()`), then normalise "
                           "with the dataset's channel means and stds (`transforms.Normalize(mean, std)`).")
    suggestions.append("Standardise each feature with statistics of the training split "
                       "(`sklearn.preprocessing.StandardScaler().fit(x_train)`, then transform every split).")
    suggestions.append("Or normalise inside the model (a `BatchNorm1d`/`LayerNorm` as its first layer).")
    ctx.emit("DAT001", message, location=split_location("train", name, leaves), severity=severity,
             evidence={"input": name, "layer": layer, "max_feature_rms": float(stats.rms.max()),
                       "median_feature_rms": float(stats.rms[stats.live].median()) if stats.live.any() else 0.0,
                       "min": stats.low, "max": stats.high, "samples": stats.samples},
             suggestions=suggestions)


# ----- DAT002 ----------------------------------------------------------------------------------

@check("data-non-finite", step="bugs", codes=("DAT002",), needs_run=False, uses_model=False)
def non_finite_data(ctx: Context) -> None:
    """Count NaN/Inf per split, input and feature, over everything the scan read."""
    train_sample(ctx)
    for split in ("train", "val"):
        found = split_scan(ctx, split)
        if found is None:
            continue
        bad = {name: counts for name, counts in found.non_finite.items() if counts.total}
        if bad:
            _report_non_finite(ctx, split, found, bad)


def _report_non_finite(ctx: Context, split: str, found: Scan, bad: dict[str, NonFinite]) -> None:
    shapes = {name: tuple(t.shape[1:]) for name, t in named_leaves(found.sample[0]) + named_leaves(found.sample[1],
                                                                                                      "targets")}
    parts = []
    evidence: dict[str, Any] = {"samples_read": found.read}
    for name, counts in bad.items():
        shape = shapes.get(name, ())
        positions = [(position(shape, p), c) for p, c in counts.positions()]
        axis = "column" if len(shape) == 1 else "position"
        parts.append(f"{name}: {counts.nan} NaN and {counts.inf} Inf in {counts.rows} of {counts.samples} samples "
                     f"(by {axis}: {', '.join(f'{p} ({c})' for p, c in positions)})")
        evidence[name] = {"nan": counts.nan, "inf": counts.inf, "samples": counts.rows,
                          "positions": [[p, c] for p, c in positions]}
    scope = "all" if found.complete else "the first"
    message = (f"The {SPLIT_NAMES[split]} data holds non-finite values, in {scope} {found.read} samples: "
               + "; ".join(parts) +
               ". One NaN in a batch makes the loss and every gradient NaN; training then silently stops learning.")
    ctx.emit("DAT002", message, location=f"{split}_data", evidence=evidence,
             suggestions=["Find them with `torch.isnan(x).nonzero()` and look at how they were produced (missing "
                          "values read as NaN, division by zero, log of 0).",
                          "Impute them (`sklearn.impute.SimpleImputer(strategy='median')`, fitted on train) or drop "
                          "those samples before training."])
