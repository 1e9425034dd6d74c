"""Step 2, how the labels arrive: batches read in order that hold one class or sorted targets (no
shuffling, DAT006), and classes so imbalanced that accuracy says little (DAT008)."""
from __future__ import annotations

from typing import Any

import numpy as np
import torch

from nndoctor import data as D
from nndoctor.checks import SkipCheck, check
from nndoctor.checks.data_sample import ORDER_BATCHES, split_scan, train_sample
from nndoctor.context import Context
from nndoctor.probes.scoring import target_labels

# ----- DAT006 ----------------------------------------------------------------------------------

PURE = 0.9  # median share of a batch's most frequent class that means "one class per batch"
SIMULATIONS = 200  # random batchings of the same data: what shuffled batches would look like


@check("data-batch-order", step="bugs", codes=("DAT006",), needs_run=False, uses_model=False)
def batch_order(ctx: Context) -> None:
    """Read the first batches in order: one class per batch, or sorted targets, means no shuffling."""
    _, targets = train_sample(ctx)
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
    found = split_scan(ctx, "train")
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



# ----- DAT008 ----------------------------------------------------------------------------------

IMBALANCE = 5.0  # largest over smallest class count: the majority alone scores >= 83% for two classes


@check("data-class-balance", step="bugs", codes=("DAT008",), needs_run=False, uses_model=False)
def class_balance(ctx: Context) -> None:
    """Class counts of the training targets: heavy imbalance makes accuracy meaningless."""
    _, targets = train_sample(ctx)
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
