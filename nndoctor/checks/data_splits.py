"""Step 2, train against validation: pre-processed differently (DAT005), or sharing samples (DAT007)."""
from __future__ import annotations

from nndoctor.checks import SkipCheck, check
from nndoctor.checks.data_sample import (
    split_location,
    split_sample,
    split_scan,
    train_sample,
)
from nndoctor.context import Context
from nndoctor.probes.data_stats import (
    FeatureStats,
    feature_stats,
    is_feature_tensor,
    named_leaves,
)

# ----- DAT005 ----------------------------------------------------------------------------------

SHIFT = 3.0  # median |val mean - train mean| in train standard deviations
SCALE_RATIO = 5.0  # median ratio of val spread to train spread (either way)


@check("data-split-preprocessing", step="bugs", codes=("DAT005",), needs_run=False, uses_model=False)
def split_preprocessing(ctx: Context) -> None:
    """Per-feature means and spreads of train and val: drastically different means different pre-processing."""
    train, val = train_sample(ctx), split_sample(ctx, "val")
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
             location=split_location("val", name, leaves),
             evidence={"median_shift_in_train_stds": shift, "median_spread_ratio": ratio,
                       "train_range": [a.low, a.high], "val_range": [b.low, b.high],
                       "train_samples": a.samples, "val_samples": b.samples},
             suggestions=["Apply the same transforms to every split: fit the scaler on train only, then "
                          "`scaler.transform(x_val)`; the same `/ 255` and `Normalize(mean, std)` for both loaders.",
                          "If validation really comes from another distribution, ignore with `--ignore DAT005`."])



# ----- DAT007 ----------------------------------------------------------------------------------

@check("data-split-overlap", step="bugs", codes=("DAT007",), needs_run=False, uses_model=False)
def split_overlap(ctx: Context) -> None:
    """Hash every sample's input bytes: validation samples found in train leak."""
    train, val = split_scan(ctx, "train"), split_scan(ctx, "val")
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
