"""Step 2, badly pre-processed data (DAT001-DAT008), measured on a sample of each split.

Scale of what reaches the first layer, non-finite values, target encoding, whether the labels relate to
the inputs at all, train/val consistency and overlap, batch order and class balance. None of these
needs a training step; DAT001 and DAT003 run the model's forward when it can.
"""
from __future__ import annotations

from typing import Any

import numpy as np
import torch
from threadpoolctl import threadpool_limits
from torch import nn

from nndoctor import data as D
from nndoctor.checks import SkipCheck, check
from nndoctor.context import Context
from nndoctor.probes.baselines import fit_baselines, is_token_ids
from nndoctor.probes.data_stats import (NORMALISATION, FeatureStats, FirstLayers, LayerCall, NonFinite, Scan,
                                        feature_stats, is_feature_tensor, named_leaves, scan, shares_storage)
from nndoctor.probes.scoring import main_output, target_labels

SAMPLE = 2048  # samples kept per split for statistics, drawn evenly from everything read
SCAN_SECONDS = 2.0  # reading a split (hashing inputs, counting targets) stops after this
ORDER_BATCHES = 8  # batches read in order to see whether they are sorted by target


def _scan(ctx: Context, split: str) -> Scan | None:
    """One time-bounded pass over a split, shared by the DAT checks; None without that split or pairs."""
    source = ctx.train if split == "train" else ctx.val

    def read() -> Scan | None:
        if source is None or ctx.setup.step is not None:
            return None
        try:
            return scan(source, SAMPLE, min(SCAN_SECONDS, ctx.budget.remaining() / 20), seed=ctx.seed)
        except Exception:  # the user's loader raised: step 1 reports reading errors
            return None

    return ctx.measure(f"data_scan:{split}", read)


def _sample(ctx: Context, split: str) -> tuple[Any, Any] | None:
    """Up to SAMPLE ``(inputs, targets)`` of a split on the CPU."""
    found = _scan(ctx, split)
    return found.sample if found is not None else None


def _train_sample(ctx: Context) -> tuple[Any, Any]:
    sample = _sample(ctx, "train")
    if sample is None:
        raise SkipCheck("training batches are not batch-first (inputs, targets) pairs of tensors")
    return sample


def _where(split: str, name: str = "inputs", leaves: int = 1) -> str:
    return f"{split}_data" if leaves == 1 and name == "inputs" else f"{split}_data {name}"


# ----- DAT001 ----------------------------------------------------------------------------------

LARGE = 20.0  # per-feature RMS above this is far from the unit scale layers are initialised for
HUGE = 100.0  # ... and above this, an error
TINY = 1e-2  # every feature's RMS below this: scaled twice (pixels / 255 / 255)?
SPREAD = 100.0  # largest feature RMS over the median one


@check("data-scale", step="bugs", codes=("DAT001",), needs_run=False)
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
    ctx.emit("DAT001", message, location=_where("train", name, leaves), severity=severity,
             evidence={"input": name, "layer": layer, "max_feature_rms": float(stats.rms.max()),
                       "median_feature_rms": float(stats.rms[stats.live].median()) if stats.live.any() else 0.0,
                       "min": stats.low, "max": stats.high, "samples": stats.samples},
             suggestions=suggestions)


# ----- DAT002 ----------------------------------------------------------------------------------

@check("data-non-finite", step="bugs", codes=("DAT002",), needs_run=False)
def non_finite_data(ctx: Context) -> None:
    """Count NaN/Inf per split, input and feature, over everything the scan read."""
    _train_sample(ctx)
    for split in ("train", "val"):
        found = _scan(ctx, split)
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
        positions = [(_position(shape, p), c) for p, c in counts.positions()]
        axis = "column" if len(shape) == 1 else "position"
        parts.append(f"{name}: {counts.nan} NaN and {counts.inf} Inf in {counts.rows} of {counts.samples} samples "
                     f"(by {axis}: {', '.join(f'{p} ({c})' for p, c in positions)})")
        evidence[name] = {"nan": counts.nan, "inf": counts.inf, "samples": counts.rows,
                          "positions": [[p, c] for p, c in positions]}
    scope = "all" if found.complete else "the first"
    message = (f"The {_SPLIT_NAMES[split]} data holds non-finite values, in {scope} {found.read} samples: "
               + "; ".join(parts) +
               ". One NaN in a batch makes the loss and every gradient NaN; training then silently stops learning.")
    ctx.emit("DAT002", message, location=f"{split}_data", evidence=evidence,
             suggestions=["Find them with `torch.isnan(x).nonzero()` and look at how they were produced (missing "
                          "values read as NaN, division by zero, log of 0).",
                          "Impute them (`sklearn.impute.SimpleImputer(strategy='median')`, fitted on train) or drop "
                          "those samples before training."])


_SPLIT_NAMES = {"train": "training", "val": "validation"}


def _position(shape: tuple[int, ...], flat: int) -> str:
    """A flattened feature position as the index a user would write: 7, or (0, 3, 5) for an image."""
    if len(shape) <= 1:
        return str(flat)
    return str(tuple(int(i) for i in np.unravel_index(flat, shape)))


# ----- DAT003 ----------------------------------------------------------------------------------

_INDEX_LOSSES = (nn.CrossEntropyLoss, nn.NLLLoss, nn.MultiMarginLoss)
_PROBABILITY_TARGET_LOSSES = (nn.BCELoss, nn.BCEWithLogitsLoss)


@check("data-targets", step="bugs", codes=("DAT003",), needs_run=False)
def target_encoding(ctx: Context) -> None:
    """Targets that do not fit the loss and the output: class range, one-hot vs indices, BCE range."""
    _train_sample(ctx)
    width = _output_width(ctx)
    for split in ("train", "val"):
        sample = _sample(ctx, split)
        if sample is None or not isinstance(sample[1], torch.Tensor) or not sample[1].numel():
            continue
        problem = _target_problem(ctx, sample[1], width)
        if problem is not None:
            _report_targets(ctx, split, *problem)
            return  # one report: the same encoding is almost always used for both splits


def _output_width(ctx: Context) -> int | None:
    """Size of dim 1 of the model's main output on the first batch (the class axis); None if unknown."""
    def compute() -> int | None:
        pair = ctx.pair(ctx.first_batch())
        if pair is None:
            return None
        model = ctx.fresh_model().eval()
        try:
            with torch.no_grad():
                outputs = ctx.forward(model, pair[0])
        except Exception:
            return None
        out = main_output(outputs, D.batch_len(pair[0]))
        return int(out.shape[1]) if out is not None and out.ndim >= 2 else None

    return ctx.measure("data:output_width", compute)


def _target_problem(ctx: Context, y: torch.Tensor, width: int | None) -> tuple[str, list[str], dict] | None:
    loss = ctx.setup.loss_fn
    if isinstance(loss, _PROBABILITY_TARGET_LOSSES):
        return _binary_target_problem(loss, y, width)
    index_loss = isinstance(loss, _INDEX_LOSSES)
    if not index_loss and not (ctx.task.kind == "classification" and not y.is_floating_point()):
        return None
    if _is_one_hot(y, width):
        if y.is_floating_point() and isinstance(loss, nn.CrossEntropyLoss):
            return None  # class probabilities: CrossEntropyLoss accepts them
        name = type(loss).__name__ if index_loss else "the loss"
        return (f"The targets are one-hot rows {tuple(y.shape)} ({_dtype(y)}), but {name} expects class indices "
                f"of shape ({len(y)},).",
                ["Convert them with `y.argmax(dim=1)`, or build the dataset with class indices."],
                {"target_shape": list(y.shape), "target_dtype": _dtype(y)})
    if y.is_floating_point():
        return None  # float class indices are RUN002's, soft targets are valid
    ignore = getattr(loss, "ignore_index", None) if index_loss else None
    valid = y[y != ignore] if ignore is not None else y
    if not valid.numel():
        return None
    low, high = int(valid.min()), int(valid.max())
    evidence = {"min": low, "max": high, "classes_out": width, "ignore_index": ignore}
    if low < 0 and index_loss:
        negative = sorted(int(v) for v in torch.unique(valid[valid < 0]))[:5]
        count = int((valid < 0).sum())
        fix = (f"If {negative[0]} marks padding or unlabelled samples, pass `ignore_index={negative[0]}` to "
               f"{type(loss).__name__}" + (f" (it is {ignore} now)" if ignore is not None else "")
               + "; otherwise remap the labels to 0..C-1.")
        ignored = f" and ignores only {ignore}" if ignore is not None else ""
        return (f"{count} target values are negative ({', '.join(map(str, negative))}); {type(loss).__name__} needs "
                f"class indices in [0, {width - 1 if width else 'C-1'}]{ignored}. This crashes on a CPU and raises a "
                "device-side assert on a GPU.", [fix], evidence)
    if width is not None and high >= width:
        if low >= 1 and high == width:
            return (f"The labels run from 1 to {high} but the model has {width} outputs, so class indices must "
                    f"run 0..{width - 1}: the labels are 1-based.",
                    ["Shift them: `y = y - 1` (once, in the dataset)."], evidence)
        fix = (["For two classes with one output unit use `nn.BCEWithLogitsLoss()` with float targets of shape "
                "(N, 1); or give the last layer 2 outputs."] if width == 1 else
               [f"Give the last layer {high + 1} outputs if there are {high + 1} classes, or remap the labels to "
                f"0..{width - 1} (`sklearn.preprocessing.LabelEncoder`)."])
        return f"Targets reach {high} but the model has {width} outputs (class indices 0..{width - 1}).", fix, evidence
    return None


def _binary_target_problem(loss: nn.Module, y: torch.Tensor, width: int | None) -> tuple[str, list[str], dict] | None:
    values = y.float()
    values = values[torch.isfinite(values)]  # non-finite targets are DAT002's
    if not values.numel():
        return None
    low, high = float(values.min()), float(values.max())
    if low >= 0 and high <= 1:
        return None
    name = type(loss).__name__
    evidence = {"min": low, "max": high, "classes_out": width, "target_shape": list(y.shape)}
    integer = bool((values == values.round()).all())
    if integer and y.ndim == 1 and width is not None and width > 1 and low >= 0 and high < width:
        return (f"{name} gets class indices (targets {tuple(y.shape)} with values 0..{int(high)}) for {width} "
                f"outputs; it expects a 0/1 target for every output, shape ({len(y)}, {width}).",
                ["For one class per sample use `nn.CrossEntropyLoss()` with these indices.",
                 f"For multi-label targets one-hot them: `F.one_hot(y, {width}).float()`."], evidence)
    if integer and set(torch.unique(values).tolist()) <= {-1.0, 0.0, 1.0}:
        return (f"{name} gets targets in {{-1, 1}}; it needs 0/1 targets (probabilities), so the -1 samples "
                "push the loss below zero and train towards nonsense.",
                ["Map the labels: `y = (y + 1) / 2`."], evidence)
    return (f"{name} needs targets in [0, 1] (probabilities); they span [{low:.4g}, {high:.4g}].",
            ["Scale or threshold the targets into [0, 1], or use a regression loss (`nn.MSELoss`) for "
             "unbounded targets."], evidence)


def _is_one_hot(y: torch.Tensor, width: int | None) -> bool:
    if y.ndim != 2 or y.shape[1] < 2 or (width is not None and y.shape[1] != width):
        return False
    return bool(((y == 0) | (y == 1)).all()) and bool((y.sum(1) == 1).all())


def _dtype(t: torch.Tensor) -> str:
    return str(t.dtype).replace("torch.", "")


def _report_targets(ctx: Context, split: str, message: str, suggestions: list[str], evidence: dict) -> None:
    location = f"{split}_data targets"
    crash = next((f for f in ctx.findings if f.code == "DAT003" and "phase" in f.evidence), None)
    if crash is not None and split == "train":
        # Step 1 already reported the crash these targets cause: make that one finding precise.
        crash.message = f"{message} The training step crashed on it: {crash.evidence.get('error', '')}"
        crash.location = location
        crash.evidence.update(evidence)
        crash.suggestions = suggestions
        return
    ctx.emit("DAT003", message, location=location, evidence=evidence, suggestions=suggestions)


# ----- DAT004 ----------------------------------------------------------------------------------

SIGNAL_SAMPLES = 1000  # samples for the probes; each half is predicted by probes fitted on the other
ALPHA = 0.01  # level of the tests and of the confidence bounds below
EDGE = 0.15  # "no signal" when even the optimistic bound of every probe's edge over chance is below this


@check("data-signal", step="bugs", codes=("DAT004",), needs_run=False)
def label_signal(ctx: Context) -> None:
    """Nearest-neighbour and linear probes, cross-fitted on two halves of a sample: are they better than chance?"""
    inputs, targets = _train_sample(ctx)
    leaves = named_leaves(inputs)
    if any(is_token_ids(t) or (not is_feature_tensor(t) and t.dtype != torch.bool and t.numel() and int(t.max()) > 1)
           for _, t in leaves):
        raise SkipCheck("the inputs hold token ids or other indices: a probe on raw values cannot judge them")
    kind = ctx.task.kind
    labels = target_labels(kind, targets) if kind in ("classification", "binary", "regression") else None
    if labels is None:
        raise SkipCheck(f"no per-sample targets to probe for a {kind} task")
    n = min(len(labels), SIGNAL_SAMPLES)
    if n < 100 or (kind != "regression" and len(np.unique(labels)) < 2):
        raise SkipCheck("too few samples or a single class")
    order = np.random.default_rng(ctx.seed).permutation(len(labels))[:n]
    features, projected = _probe_features([t for _, t in leaves if is_feature_tensor(t)], ctx.seed)
    predicted, description = _cross_fitted(kind, features, labels, order, ctx.seed)
    description += projected
    truth = labels[order]
    results = sorted((_edge(kind, pred, truth) + (name,) for name, pred in predicted.items()), key=lambda r: -r[1])
    if not results:
        raise SkipCheck("no probe could be fitted")
    edge, upper, p_value, score, name = results[0]  # the most favourable probe
    if p_value <= ALPHA or upper >= EDGE:
        return
    what = (f"the best probe ({name}) predicts held-out targets with correlation {score[0]:.2f}" if kind == "regression"
            else f"the best probe ({name}) scores {score[0]:.1%} on held-out samples where chance is {score[1]:.1%}")
    ctx.emit("DAT004",
             f"The training targets look unrelated to the inputs: {what}, p = {p_value:.2g}; with {1 - ALPHA:.0%} "
             f"confidence its {'correlation' if kind == 'regression' else 'edge over chance'} is below {upper:.2f}"
             f"{'' if kind == 'regression' else ' of the way to perfect'} ({n} samples, each predicted "
             f"by probes fitted on the other half; {description}). Labels shuffled separately from the inputs, or "
             "misaligned with them, give exactly this; a model then only memorises.",
             location="train_data targets",
             evidence={"probe": name, "p_value": p_value, "edge": edge, "edge_upper_bound": upper, "samples": n,
                       "score": score[0], "chance": score[1]},
             suggestions=["Check that inputs and targets are indexed together (one permutation for both, the same "
                          "row order after merges/joins, labels read in the same order as the files).",
                          "If the signal is real but invisible to nearest-neighbour and linear probes on raw values "
                          "(phase-shifted signals, parity-like rules), ignore this with `--ignore DAT004`."])


PROBE_WIDTH = 256  # wider inputs are randomly projected to this many features: distances and linear
                  # separability survive (Johnson-Lindenstrauss), the probes' cost does not grow with images


def _probe_features(leaves: list[torch.Tensor], seed: int) -> tuple[torch.Tensor, str]:
    """The feature inputs flattened side by side (N, D), randomly projected when D > PROBE_WIDTH."""
    x = torch.cat([t.reshape(len(t), -1).float() for t in leaves], dim=1)  # (N, D)
    x = torch.nan_to_num(x, nan=0.0, posinf=0.0, neginf=0.0)  # non-finite values are DAT002's
    if x.shape[1] <= PROBE_WIDTH:
        return x, ""
    generator = torch.Generator().manual_seed(seed)
    projection = torch.randn(x.shape[1], PROBE_WIDTH, generator=generator) / PROBE_WIDTH ** 0.5  # (D, W)
    return x @ projection, f", randomly projected from {x.shape[1]} to {PROBE_WIDTH}"


def _cross_fitted(kind: str, features: torch.Tensor, labels: np.ndarray, order: np.ndarray,
                  seed: int) -> tuple[dict[str, np.ndarray], str]:
    """Each probe's predictions for the samples ``order``, every half predicted by a fit on the other half."""
    halves = (order[: len(order) // 2], order[len(order) // 2:])
    predicted: dict[str, np.ndarray] = {}
    description = ""
    for (fit, held), offset in (((halves[0], halves[1]), len(halves[0])), ((halves[1], halves[0]), 0)):
        with threadpool_limits(1):  # fits this small only lose time to BLAS threads (tenfold on a busy CPU)
            baselines, description = fit_baselines(kind, D.index(features, torch.from_numpy(fit)), labels[fit],
                                                   D.index(features, torch.from_numpy(held)), seed=seed)
        for b in baselines:
            if b.predictions is None or b.kind == "majority":
                continue
            out = predicted.setdefault(b.name, np.zeros((len(order),) + b.predictions.shape[1:], b.predictions.dtype))
            out[offset: offset + len(held)] = b.predictions
    return predicted, description


def _edge(kind: str, pred: np.ndarray, truth: np.ndarray) -> tuple[float, float, float, tuple[float, float]]:
    """(edge over chance, its upper confidence bound, p-value of "no better than chance", (score, chance)).

    Classification: the edge is (accuracy - chance) / (1 - chance), chance being the accuracy of predictions
    independent of the labels with the same class frequencies. Regression: the correlation of predictions
    and targets (the best output column).
    """
    from scipy import stats

    n = len(truth)
    z = stats.norm.ppf(1 - ALPHA)
    if kind == "regression":
        best = (0.0, -1.0, 1.0, (0.0, 0.0))
        for i in range(truth.shape[1]):
            if np.std(pred[:, i]) == 0 or np.std(truth[:, i]) == 0:
                continue
            test = stats.pearsonr(pred[:, i], truth[:, i], alternative="greater")
            r = float(test.statistic)
            upper = float(np.tanh(np.arctanh(min(r, 0.999999)) + z / np.sqrt(max(n - 3, 1))))
            best = max(best, (r, upper, float(test.pvalue), (r, 0.0)), key=lambda b: b[1])
        return best
    accuracy = float((pred == truth).mean())
    chance = _chance_accuracy(pred, truth)
    p_value = float(stats.binomtest(int((pred == truth).sum()), n, chance, alternative="greater").pvalue)
    upper = accuracy + z * np.sqrt(max(accuracy * (1 - accuracy), chance * (1 - chance)) / n)
    return ((accuracy - chance) / (1 - chance), float((upper - chance) / (1 - chance)), p_value, (accuracy, chance))


def _chance_accuracy(pred: np.ndarray, truth: np.ndarray) -> float:
    """Expected accuracy of predictions independent of the labels, with the same class frequencies."""
    classes = np.union1d(pred, truth)
    p = np.array([(pred == c).mean() for c in classes])
    q = np.array([(truth == c).mean() for c in classes])
    return float(min(max((p * q).sum(), 1e-6), 1 - 1e-6))


# ----- DAT005 ----------------------------------------------------------------------------------

SHIFT = 3.0  # median |val mean - train mean| in train standard deviations
SCALE_RATIO = 5.0  # median ratio of val spread to train spread (either way)


@check("data-split-preprocessing", step="bugs", codes=("DAT005",), needs_run=False)
def split_preprocessing(ctx: Context) -> None:
    """Per-feature means and spreads of train and val: drastically different means different pre-processing."""
    train, val = _train_sample(ctx), _sample(ctx, "val")
    if val is None:
        raise SkipCheck("no validation data")
    val_leaves = dict(named_leaves(val[0]))
    leaves = [(name, t, val_leaves.get(name)) for name, t in named_leaves(train[0]) if is_feature_tensor(t)]
    for name, t, v in leaves:
        if v is None or v.shape[1:] != t.shape[1:] or min(len(t), len(v)) < 20:
            continue
        a, b = feature_stats(t), feature_stats(v)
        usable = a.std > 1e-12 * max(float(a.rms.max()), 1e-30)
        if not usable.any():
            continue
        shift = float(((b.mean - a.mean).abs() / a.std)[usable].median())
        spread = usable & (b.std > 0)  # a rare feature may be constant in a small validation sample
        ratio = float((b.std / a.std)[spread].median()) if spread.any() else 1.0
        if shift > SHIFT or not 1 / SCALE_RATIO <= ratio <= SCALE_RATIO:
            _report_split(ctx, name, len(leaves), a, b, shift, ratio)
            return


def _report_split(ctx: Context, name: str, leaves: int, a: FeatureStats, b: FeatureStats,
                  shift: float, ratio: float) -> None:
    ctx.emit("DAT005",
             f"Train and validation {name} look pre-processed differently: a typical feature's validation mean is "
             f"{shift:.3g} training standard deviations from its training mean, and its spread is {ratio:.3g}x the "
             f"training spread. Train values lie in [{a.low:.4g}, {a.high:.4g}], validation values in "
             f"[{b.low:.4g}, {b.high:.4g}]. The validation score then measures the pipeline, not the model.",
             location=_where("val", name, leaves),
             evidence={"median_shift_in_train_stds": shift, "median_spread_ratio": ratio,
                       "train_range": [a.low, a.high], "val_range": [b.low, b.high],
                       "train_samples": a.samples, "val_samples": b.samples},
             suggestions=["Apply the same transforms to every split: fit the scaler on train only, then "
                          "`scaler.transform(x_val)`; the same `/ 255` and `Normalize(mean, std)` for both loaders.",
                          "If validation really comes from another distribution, ignore with `--ignore DAT005`."])


# ----- DAT006 ----------------------------------------------------------------------------------

PURE = 0.9  # median share of a batch's most frequent class that means "one class per batch"
SIMULATIONS = 200  # random batchings of the same data: what shuffled batches would look like


@check("data-batch-order", step="bugs", codes=("DAT006",), needs_run=False)
def batch_order(ctx: Context) -> None:
    """Read the first batches in order: one class per batch, or sorted targets, means no shuffling."""
    _, targets = _train_sample(ctx)
    kind = ctx.task.kind
    batches = [D.split_batch(b) for b in ctx.train.batches(limit=ORDER_BATCHES)]
    ys = [target_labels(kind, b[1]) if b is not None else None for b in batches]
    if len(ys) < 2 or any(y is None or len(y) < 2 for y in ys):
        raise SkipCheck("fewer than two batches of per-sample targets")
    if kind in ("classification", "binary"):
        observed = _median_purity(ys)
        pool = _all_labels(ctx, kind, targets)
        shuffled = _shuffled_purity(pool, [len(y) for y in ys], np.random.default_rng(ctx.seed))  # (SIMULATIONS,)
        p_value = (1 + int((shuffled >= observed).sum())) / (1 + len(shuffled))
        if observed >= PURE and p_value < 0.01:
            shown = " ".join(_classes(y) for y in ys)
            ctx.emit("DAT006",
                     f"The first {len(ys)} training batches each hold almost only one class (classes per batch: "
                     f"{shown}; median share of the main class {observed:.0%}, against {np.median(shuffled):.0%} "
                     "for shuffled batches of this data): the samples are ordered by target and not shuffled. "
                     "Each step then pushes the model towards one class and the next undoes it.",
                     location="train_data",
                     evidence={"median_batch_purity": observed, "shuffled_median_purity": float(np.median(shuffled)),
                               "p_value": p_value, "batches": len(ys)},
                     suggestions=_shuffle_fixes(ctx))
    elif kind == "regression":
        from scipy import stats

        y = np.concatenate([t[:, 0] for t in ys])
        rho = float(stats.spearmanr(np.arange(len(y)), y).statistic) if np.std(y) > 0 else 0.0
        if len(y) >= 50 and abs(rho) >= PURE:
            ctx.emit("DAT006",
                     f"The targets of the first {len(ys)} training batches are sorted (rank correlation with their "
                     f"position {rho:+.2f}): the samples are ordered by target and not shuffled.",
                     location="train_data", severity="warning",
                     evidence={"spearman_position_target": rho, "samples": len(y)}, suggestions=_shuffle_fixes(ctx))


def _all_labels(ctx: Context, kind: str, sample_targets: Any) -> np.ndarray:
    """Labels of every training target read (the sample's when targets could not be kept)."""
    found = _scan(ctx, "train")
    every = target_labels(kind, found.targets) if found is not None and found.targets is not None else None
    return every if every is not None else target_labels(kind, sample_targets)


def _median_purity(batches: list[np.ndarray]) -> float:
    """Median over batches of the share of each batch's most frequent class."""
    return float(np.median([np.bincount(y.astype(np.int64)).max() / len(y) for y in batches]))


def _shuffled_purity(pool: np.ndarray, sizes: list[int], rng: np.random.Generator) -> np.ndarray:
    """``_median_purity`` of batches of these sizes drawn at random from ``pool``, SIMULATIONS times."""
    cuts = np.cumsum(sizes)[:-1]
    replace = len(pool) < sum(sizes)
    return np.array([_median_purity(np.split(rng.choice(pool, sum(sizes), replace=replace), cuts))
                     for _ in range(SIMULATIONS)])


def _classes(y: np.ndarray) -> str:
    """The classes of one batch, most frequent first: "[3]" or "[3, 4]"."""
    values, counts = np.unique(y, return_counts=True)
    return "[" + ", ".join(str(int(v)) for v in values[np.argsort(-counts)][:3]) + "]"


def _shuffle_fixes(ctx: Context) -> list[str]:
    if isinstance(ctx.setup.train_data, torch.utils.data.DataLoader):
        return ["Shuffle every epoch: `DataLoader(dataset, batch_size=..., shuffle=True)`."]
    return ["Shuffle the samples before batching (`perm = torch.randperm(len(y)); x, y = x[perm], y[perm]`), "
            "or pass a `DataLoader(..., shuffle=True)`."]


# ----- DAT007 ----------------------------------------------------------------------------------

@check("data-split-overlap", step="bugs", codes=("DAT007",), needs_run=False)
def split_overlap(ctx: Context) -> None:
    """Hash every sample's input bytes: validation samples found in train leak."""
    train, val = _scan(ctx, "train"), _scan(ctx, "val")
    if train is None or train.sample is None:
        raise SkipCheck("training batches are not batch-first (inputs, targets) pairs of tensors")
    if val is None or val.sample is None:
        raise SkipCheck("no validation data")
    shared = sum(count for digest, count in val.digests.items() if digest in train.digests)
    # A random split of data with duplicates shares about as many samples as train duplicates itself.
    duplicated = sum(c for c in train.digests.values() if c > 1) / max(train.read, 1)
    overlap = shared / max(val.read, 1)
    if shared < 3 or overlap < 0.05 + 2 * duplicated:
        return
    scope = "all" if train.complete else "the first"
    ctx.emit("DAT007",
             f"{shared} of {val.read} validation samples ({overlap:.0%}) also appear in the training data (identical "
             f"inputs, in {scope} {train.read} training samples). The validation score then rewards memorising and "
             "overstates how the model does on new data.",
             location="val_data", severity="error" if overlap >= 0.5 else "warning",
             evidence={"shared": shared, "val_samples": val.read, "train_samples_read": train.read,
                       "overlap": overlap, "train_duplicate_rate": duplicated},
             suggestions=["Split once, by index, before any augmentation or oversampling (`train_test_split` or "
                          "`torch.utils.data.random_split`), and deduplicate the data before splitting.",
                          "For grouped data (several samples per patient/user/file), split by group "
                          "(`sklearn.model_selection.GroupShuffleSplit`)."])


# ----- DAT008 ----------------------------------------------------------------------------------

IMBALANCE = 5.0  # largest over smallest class count: the majority alone scores >= 83% for two classes


@check("data-class-balance", step="bugs", codes=("DAT008",), needs_run=False)
def class_balance(ctx: Context) -> None:
    """Class counts of the training targets: heavy imbalance makes accuracy meaningless."""
    _, targets = _train_sample(ctx)
    kind = ctx.task.kind
    if kind not in ("classification", "binary", "multilabel"):
        raise SkipCheck(f"not a classification task ({kind})")
    labels = _all_labels(ctx, kind, targets)
    if labels is None:
        raise SkipCheck("targets are not one per sample")
    loss = ctx.setup.loss_fn
    weighted = getattr(loss, "weight", None) is not None or getattr(loss, "pos_weight", None) is not None
    severity = "info" if weighted else None
    if kind == "multilabel":
        positive = labels.mean(0)  # (K,)
        rare = [(i, float(p)) for i, p in enumerate(positive) if min(p, 1 - p) * (IMBALANCE + 1) <= 1]
        if rare:
            shown = ", ".join(f"label {i}: {p:.1%} positive" for i, p in rare[:5])
            ctx.emit("DAT008", f"Some labels are heavily imbalanced ({shown}, in {len(labels)} training samples): "
                     "elementwise accuracy is high even for a model that always predicts the common value.",
                     location="train_data targets", severity=severity,
                     evidence={"positive_rate": {str(i): p for i, p in rare}},
                     suggestions=["Report per-label F1 or average precision (`sklearn.metrics.f1_score(..., "
                                  "average='macro')`).",
                                  "Weight the positives: `nn.BCEWithLogitsLoss(pos_weight=negatives / positives)`."])
        return
    counts = np.bincount(labels.astype(np.int64))
    present = {int(c): int(n) for c, n in enumerate(counts) if n > 0}
    if len(present) < 2:
        return
    big, small = max(present, key=present.get), min(present, key=present.get)
    ratio = present[big] / present[small]
    if ratio < IMBALANCE:
        return
    total = sum(present.values())
    ctx.emit("DAT008",
             f"Classes are heavily imbalanced: class {big} has {present[big]} samples and class {small} has "
             f"{present[small]} ({ratio:.0f}:1, in {total} training samples). Always predicting class {big} already "
             f"scores {present[big] / total:.1%} accuracy, so accuracy says little about the rare classes"
             + (" (the loss is already weighted)." if weighted else "."),
             location="train_data targets", severity=severity,
             evidence={"counts": present, "ratio": ratio, "majority_accuracy": present[big] / total},
             suggestions=["Judge the model with balanced accuracy or macro F1 (`sklearn.metrics.balanced_accuracy_"
                          "score`, `f1_score(y, pred, average='macro')`) and a per-class confusion matrix.",
                          "Weight the loss by inverse class frequency (`nn.CrossEntropyLoss(weight=...)`, "
                          "`BCEWithLogitsLoss(pos_weight=...)`) or oversample rare classes "
                          "(`torch.utils.data.WeightedRandomSampler`)."])
