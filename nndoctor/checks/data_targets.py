"""Step 2, the targets: an encoding that does not fit the loss and the output (DAT003), and labels that
do not relate to the inputs at all (DAT004, probes cross-fitted on the sample; the same probes on the
validation pairs tell misaligned training pairs, cause ``labels``, from inputs without signal)."""
from __future__ import annotations

import numpy as np
import torch
from threadpoolctl import threadpool_limits
from torch import nn

from nndoctor import data as D
from nndoctor.checks import SkipCheck, check
from nndoctor.checks.data_sample import split_sample, train_sample
from nndoctor.context import Context
from nndoctor.probes.baselines import fit_baselines, is_token_ids
from nndoctor.probes.data_stats import is_feature_tensor, named_leaves
from nndoctor.probes.scoring import main_output, target_labels

# ----- DAT003 ----------------------------------------------------------------------------------

_INDEX_LOSSES = (nn.CrossEntropyLoss, nn.NLLLoss, nn.MultiMarginLoss)
_PROBABILITY_TARGET_LOSSES = (nn.BCELoss, nn.BCEWithLogitsLoss)


@check("data-targets", step="bugs", codes=("DAT003",), needs_run=False)
def target_encoding(ctx: Context) -> None:
    """Targets that do not fit the loss and the output: class range, one-hot vs indices, BCE range."""
    train_sample(ctx)
    width = _output_width(ctx)
    for split in ("train", "val"):
        sample = split_sample(ctx, split)
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


@check("data-signal", step="bugs", codes=("DAT004",), needs_run=False, uses_model=False)
def label_signal(ctx: Context) -> None:
    """Nearest-neighbour and linear probes, cross-fitted on two halves of a sample: are they better than chance?"""
    inputs, targets = train_sample(ctx)
    leaves = named_leaves(inputs)
    if any(is_token_ids(t) or (not is_feature_tensor(t) and t.dtype != torch.bool and t.numel() and int(t.max()) > 1)
           for _, t in leaves):
        raise SkipCheck("the inputs hold token ids or other indices: a probe on raw values cannot judge them")
    kind = ctx.task.kind
    if kind not in ("classification", "binary", "regression"):
        raise SkipCheck(f"no per-sample targets to probe for a {kind} task")
    probed = _probe_split(ctx, kind, inputs, targets)
    if isinstance(probed, str):
        raise SkipCheck(probed)
    (edge, upper, p_value, score, name), n, description = probed
    if p_value <= ALPHA or upper >= EDGE:
        return
    what = (f"the best probe ({name}) predicts held-out targets with correlation {score[0]:.2f}" if kind == "regression"
            else f"the best probe ({name}) scores {score[0]:.1%} on held-out samples where chance is {score[1]:.1%}")
    evidence = {"probe": name, "p_value": p_value, "edge": edge, "edge_upper_bound": upper, "samples": n,
                "score": score[0], "chance": score[1]}
    ctx.emit("DAT004",
             f"The training targets look unrelated to the inputs: {what}, p = {p_value:.2g}; with {1 - ALPHA:.0%} "
             f"confidence its {'correlation' if kind == 'regression' else 'edge over chance'} is below {upper:.2f}"
             f"{'' if kind == 'regression' else ' of the way to perfect'} ({n} samples, each predicted "
             f"by probes fitted on the other half; {description}). Labels shuffled separately from the inputs, or "
             "misaligned with them, give exactly this; a model then only memorises." + _validation_pairs(ctx, kind,
                                                                                                        evidence),
             location="train_data targets", severity="error" if "cause" in evidence else None, evidence=evidence,
             suggestions=["Check that inputs and targets are indexed together (one permutation for both, the same "
                          "row order after merges/joins, labels read in the same order as the files).",
                          "If the signal is real but invisible to nearest-neighbour and linear probes on raw values "
                          "(phase-shifted signals, parity-like rules), ignore this with `--ignore DAT004`."])


def _probe_split(ctx: Context, kind: str, inputs, targets) -> tuple[tuple, int, str] | str:
    """The most favourable probe's (edge, upper bound, p-value, (score, chance), name), the samples probed and
    what the probes saw, for one split's sample; a string says why it cannot be probed."""
    labels = target_labels(kind, targets)
    if labels is None:
        return f"no per-sample targets to probe for a {kind} task"
    n = min(len(labels), SIGNAL_SAMPLES)
    if n < 100 or (kind != "regression" and len(np.unique(labels)) < 2):
        return "too few samples or a single class"
    order = np.random.default_rng(ctx.seed).permutation(len(labels))[:n]
    features, projected = _probe_features([t for _, t in named_leaves(inputs) if is_feature_tensor(t)], ctx.seed)
    predicted, description = _cross_fitted(kind, features, labels, order, ctx.seed)
    truth = labels[order]
    results = sorted((_edge(kind, pred, truth) + (name,) for name, pred in predicted.items()), key=lambda r: -r[1])
    if not results:
        return "no probe could be fitted"
    return results[0], n, description + projected


def _validation_pairs(ctx: Context, kind: str, evidence: dict) -> str:
    """The same probes on the validation pairs. Where they find a clear signal that the training pairs lack,
    the inputs do carry the target and the training pairs are what is broken (misaligned, shuffled or wrong
    labels): cause ``labels``, with both scores as the verified contrast. Limits: when both splits go through
    the same broken pairing, or no val_data is given, nothing is confirmed (the finding says so)."""
    sample = split_sample(ctx, "val")
    probed = _probe_split(ctx, kind, *sample) if sample is not None else "no val_data given"
    if isinstance(probed, str):
        return f" (Not confirmed: {probed}, so nndoctor cannot tell misaligned pairs from inputs without signal.)"
    (edge, upper, p_value, score, name), n, _ = probed
    measure = "correlation" if kind == "regression" else "accuracy"
    if p_value > ALPHA or edge < EDGE:
        return (f" The validation pairs show no clear signal either ({name}: {measure} {score[0]:.3g}, p = "
                f"{p_value:.2g}): both splits are paired the same broken way, or the inputs do not carry the target.")
    before, after = {"score": evidence["score"], "edge": evidence["edge"], "samples": evidence["samples"]}, \
        {"score": score[0], "edge": edge, "samples": n, "probe": name}
    summary = (f"the same probes on val_data's pairs instead of train_data's: {measure} {evidence['score']:.3g} -> "
               f"{score[0]:.3g} (chance {evidence['chance']:.3g})")
    evidence.update(cause="labels", verified_fix={"change": "probes fitted on the validation pairs", "before": before,
                                                  "after": after, "summary": summary, "verified": True})
    return (f" Confirmed: on the validation pairs the same probes find the signal ({name}: {measure} {score[0]:.3g}, "
            f"p = {p_value:.2g}), so the inputs carry the target and the training pairs are broken. Cause: labels.")


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
