"""Step 3, the playbook's advice "build complicated data pipelines later" (OFB007).

Before a model is known to work, every moving part of the data pipeline is one more suspect. This check
measures the three that matter most and says so (info): random augmentation (the same samples read twice
come back different), several DataLoader worker processes (crashes and hangs in workers hide the real
error), and per-sample loading that costs more than training on the sample. When augmentation is present
it runs the experiment that tells whether it is what stops the model: the same samples overfit as one
fixed read and as a fresh (augmented) read at every step, same copy, seed and step budget. Only when the
fixed read reaches the goal and the augmented one stays far from it is it a warning, with both numbers.
"""
from __future__ import annotations

import time
from typing import Any

from torch.utils.data import DataLoader, IterableDataset
from torch.utils.data._utils.collate import default_collate

from nndoctor import data as D
from nndoctor.checks import SkipCheck, check
from nndoctor.checks.overfit_experiment import Experiment, experiment, num
from nndoctor.context import Context
from nndoctor.probes.repeat_read import read_twice
from nndoctor.trainer import FixedBatch, Variant

STEPS = 300  # per run of the on/off experiment: overfitting one batch takes a few hundred steps at most
FAR = 2.0  # the augmented run's final error this many times the goal (and the fixed run's) is harm
TIMED_SAMPLES = 16  # samples read to time the per-sample cost of loading


@check("data-pipeline", step="overfit", codes=("OFB007",))
def data_pipeline(ctx: Context) -> None:
    """Say which parts of the data pipeline are complicated; measure whether augmentation stops overfitting."""
    raw = ctx.train.raw
    loader = raw if isinstance(raw, DataLoader) else None
    dataset = loader.dataset if loader is not None else raw
    indexable = (hasattr(dataset, "__getitem__") and hasattr(dataset, "__len__")
                 and not isinstance(dataset, (IterableDataset, tuple, list)))
    parts: list[str] = []
    evidence: dict[str, Any] = {}
    reread = read_twice(ctx.train)
    augmented = reread is not None and reread.inputs_differ and not reread.targets_differ
    if augmented:
        parts.append(f"random augmentation (reading {reread.how} twice gave different inputs)")
    workers = getattr(loader, "num_workers", 0) if loader is not None else 0
    if workers > 0:
        parts.append(f"{workers} DataLoader worker processes")
        evidence["num_workers"] = workers
    exp = _experiment_or_none(ctx)
    if indexable and exp is not None:
        load = _seconds_per_sample(dataset)
        train = exp.baseline.seconds / max(exp.baseline_steps, 1) / max(exp.samples, 1)
        evidence.update(load_seconds_per_sample=load, train_seconds_per_sample=train)
        if load > max(train, 1e-4):
            parts.append(f"per-sample loading that costs {load / max(train, 1e-9):.0f}x the training step per sample "
                         f"({num(load * 1e3)} ms a sample)")
    if not parts:
        raise SkipCheck("a plain pipeline: no random augmentation, worker processes or heavy per-sample loading")
    evidence["complications"] = parts
    harm = _augmentation_harm(ctx, exp, dataset, loader) if augmented and indexable and exp is not None else None
    if harm is not None:
        evidence["augmentation_experiment"] = harm
    if harm is not None and harm["harm"]:
        ctx.emit("OFB007", f"Random augmentation is what stops the model from overfitting: the same {harm['samples']} "
                 f"samples read once reach the goal (task error {num(harm['fixed_error'])} after "
                 f"{harm['fixed_steps']} steps), read afresh at every step they do not (task error "
                 f"{num(harm['augmented_error'])} after {harm['augmented_steps']} steps).",
                 location="train_data", evidence=evidence, severity="warning",
                 suggestions=["Make the model work without augmentation first (overfit a batch, beat the baselines), "
                              "then add augmentation back one transform at a time.",
                              "If it still cannot fit augmented data, the augmentation may destroy the signal "
                              "(a crop that cuts the object, noise larger than the features)."])
        return
    ctx.emit("OFB007", "The data pipeline is complicated before the model is known to work: " + "; ".join(parts)
             + ". Start with a plain in-memory pipeline and add these one at a time once the model learns.",
             location="train_data", evidence=evidence, severity="info",
             suggestions=["Debug with num_workers=0 (errors in workers surface as-is), no augmentation, and data "
                          "pre-processed once into tensors."])


def _experiment_or_none(ctx: Context) -> Experiment | None:
    try:
        return experiment(ctx)
    except SkipCheck:
        return None


def _seconds_per_sample(dataset: Any) -> float:
    n = min(TIMED_SAMPLES, len(dataset))
    start = time.perf_counter()
    for i in range(n):
        dataset[i]
    return (time.perf_counter() - start) / max(n, 1)


def _augmentation_harm(ctx: Context, exp: Experiment, dataset: Any, loader: DataLoader | None) -> dict[str, Any] | None:
    """Overfit the same samples read once and read afresh at each step; None when there is no time."""
    if exp.time_left() <= 0:
        return None
    collate = getattr(loader, "collate_fn", None) or default_collate
    indices = list(range(min(exp.samples, len(dataset))))

    def fresh(step: int) -> Any:  # a new (augmented) read of the same samples
        return D.to_device(collate([dataset[i] for i in indices]), ctx.device)

    runs = {}
    for label, batches in (("read once", FixedBatch(fresh(0))), ("read afresh", fresh)):
        trainer = exp.trainer(Variant(label=f"pipeline: {label}"))
        trainer.batches = batches
        trainer.advance(STEPS, exp.until(), stop_early=True)
        runs[label] = trainer
        trainer.release()
    fixed, aug = runs["read once"], runs["read afresh"]
    if not fixed.error or not aug.error:
        return None
    fixed_error, aug_error = fixed.error[-1], aug.error[-1]
    goal = fixed.goal.error_ok
    harm = (fixed.converged_at is not None and aug.converged_at is None
            and aug_error > FAR * max(goal, fixed_error) and aug.steps >= min(STEPS, fixed.steps))
    return {"samples": len(indices), "fixed_error": fixed_error, "fixed_steps": fixed.steps,
            "augmented_error": aug_error, "augmented_steps": aug.steps, "goal": goal, "harm": harm}

