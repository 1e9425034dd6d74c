"""Distributed (DDP) checks: judge the per-rank summaries gathered on rank 0 (``probes/rank_facts.py``)
and merge every rank's own findings into one report whose findings name the ranks involved.

These checks compare ranks, so they run at the end of a multi-process run (``nndoctor run`` under
``torchrun``, or ``Monitor.report()`` on every rank), not in the single-process ``check`` playbook.
"""
from __future__ import annotations

import math
import statistics
from typing import Any

from nndoctor.findings import Finding

SMALL_BN_BATCH = 32  # per-rank samples below which batch-norm statistics are noisy (catalogue: DDP004)
REL_TOLERANCE = 1e-6  # replicas are bit-identical under DDP; this only absorbs float64 summation order


def judge(ranks: list[dict[str, Any]]) -> list[Finding]:
    """DDP001-DDP004 from the summaries of the ranks that reported (rank 0's first)."""
    if len(ranks) < 2:
        return []
    ranks = sorted(ranks, key=lambda r: r["rank"])
    return [*_divergence(ranks), *_sampler_epoch(ranks), *_duplicate_data(ranks), *_unsynced_bn(ranks)]


def merge(per_rank: list[tuple[int, list[Finding]]], world_size: int) -> list[Finding]:
    """One finding per (code, location) across ranks; its message and evidence name the ranks that saw it
    (rank 0's wording, or the lowest rank's when rank 0 did not see it)."""
    groups: dict[tuple[str, str], tuple[Finding, list[int]]] = {}
    for rank, findings in sorted(per_rank, key=lambda item: item[0]):
        for f in findings:
            key = (f.code, f.location)
            if key in groups:
                groups[key][1].append(rank)
            else:
                groups[key] = (f, [rank])
    merged = []
    for finding, ranks in groups.values():
        finding.evidence = {**finding.evidence, "ranks": ranks}
        finding.message += f" [{_ranks(ranks, world_size)}]"
        merged.append(finding)
    return merged


def _ranks(ranks: list[int], world_size: int) -> str:
    if len(ranks) == world_size and world_size > 1:
        return f"all {world_size} ranks"
    return ("rank " if len(ranks) == 1 else "ranks ") + ", ".join(map(str, ranks))


# ----- DDP001: replicas that differ ------------------------------------------------------------------------
def _differs(a: list[float], b: list[float]) -> bool:
    return any(not (math.isclose(x, y, rel_tol=REL_TOLERANCE, abs_tol=1e-12) or (math.isnan(x) and math.isnan(y)))
               for x, y in zip(a, b))


def _divergence(ranks: list[dict[str, Any]]) -> list[Finding]:
    with_sums = [r for r in ranks if r["checksums"]]
    if len(with_sums) < 2:
        return []
    common = set.intersection(*(set(r["checksums"]) for r in with_sums))
    ref = with_sums[0]
    for step in sorted(common, key=int):
        ref_sums = ref["checksums"][step]
        differing: dict[int, tuple[list[str], dict[str, list[float]]]] = {}
        for other in with_sums[1:]:
            sums = other["checksums"][step]
            if set(sums) != set(ref_sums):
                continue  # not the same model: nothing to compare
            names = [name for name in ref_sums if _differs(ref_sums[name], sums[name])]
            if names:
                differing[other["rank"]] = (names, sums)
        if differing:
            rank, (names, sums) = next(iter(differing.items()))
            name, involved = names[0], [ref["rank"], *differing]
            return [Finding(
                "DDP001", f"After optimizer step {step} the model's parameters differ between ranks "
                f"{', '.join(map(str, involved))}: {len(names)} of {len(ref_sums)} tensors differ on rank {rank}, "
                f"first `{name}` (sum {ref_sums[name][0]:.6g} on rank {ref['rank']}, {sums[name][0]:.6g} on rank "
                f"{rank}). Each rank now trains a different model.",
                location="model." + name.rsplit(".", 1)[0] if "." in name else "model",
                evidence={"ranks": involved, "step": int(step),
                          "differing": {str(r): n[:20] for r, (n, _) in differing.items()}},
                suggestions=["Wrap the model in DistributedDataParallel (it broadcasts rank 0's weights and "
                             "averages gradients); change parameters only through the optimizer, on every rank."])]
    return []


# ----- DDP002: a DistributedSampler that never moves to the next epoch ---------------------------------------
def _main_loader(rank: dict[str, Any]) -> dict[str, Any] | None:
    loaders = rank["training_loaders"]
    return loaders[0] if loaders else None


def _sampler_epoch(ranks: list[dict[str, Any]]) -> list[Finding]:
    stuck, passes, sampler = [], 0, ""
    for r in ranks:
        for loaders in _by_dataset(r["training_loaders"]):
            shuffling = [f for f in loaders if f["sharded"] and f["shuffle"] and f["has_set_epoch"]]
            # the shuffling seed (seed + epoch) of every pass that trained (not an evaluation pass)
            seeds = [seed for f in shuffling for seed, steps in f["passes"] if steps]
            if len(seeds) >= 2 and None not in seeds and len(set(seeds)) == 1:
                stuck.append(r["rank"])
                passes, sampler = len(seeds), shuffling[0]["sampler"]
                break
    if not stuck:
        return []
    return [Finding(
        "DDP002", f"The training DataLoader's {sampler} shuffled all {passes} training passes over the data with "
        f"the same seed: set_epoch() is never called, so every epoch visits the samples in the same order "
        f"[{_ranks(stuck, ranks[0]['world_size'])}].",
        location="training data loader (sampler)", evidence={"ranks": stuck, "passes": passes},
        suggestions=["Call sampler.set_epoch(epoch) at the start of every epoch, before iterating the loader."])]


def _by_dataset(loaders: list[dict[str, Any]]) -> list[list[dict[str, Any]]]:
    groups: dict[Any, list[dict[str, Any]]] = {}
    for f in loaders:
        groups.setdefault(f.get("dataset_id"), []).append(f)
    return list(groups.values())


# ----- DDP003: ranks that read the same samples --------------------------------------------------------------
def _same_batches(a: list[str], b: list[str]) -> bool:
    n = min(len(a), len(b))
    same = sum(x == y for x, y in zip(a, b))
    return n >= 2 and same >= max(2, (n + 1) // 2)


def _groups(ranks: list[dict[str, Any]], same) -> list[list[int]]:
    """Ranks joined whenever ``same(r1, r2)``; only groups of two or more."""
    groups: list[list[dict[str, Any]]] = []
    for r in ranks:
        for group in groups:
            if same(group[0], r):
                group.append(r)
                break
        else:
            groups.append([r])
    return [[r["rank"] for r in g] for g in groups if len(g) > 1]


def _duplicate_data(ranks: list[dict[str, Any]]) -> list[Finding]:
    def hashes(r: dict[str, Any]) -> list[str]:
        loader = _main_loader(r)
        return loader["batch_hashes"] if loader is not None else r["input_hashes"]

    def whole_dataset(r: dict[str, Any]) -> bool:  # reads every sample of its dataset each pass
        loader = _main_loader(r)
        return bool(loader and not loader["sharded"] and loader["dataset_digest"]
                    and loader.get("sampler_len") == loader["dataset_len"])

    identical = _groups(ranks, lambda a, b: _same_batches(hashes(a), hashes(b)))
    if identical:
        group = identical[0]
        loader = _main_loader(next(r for r in ranks if r["rank"] == group[0]))
        compared = min(len(hashes(r)) for r in ranks if r["rank"] in group)
        if loader is None:
            how = "the training loop slices the same tensors on every rank"
        elif not loader["map_style"]:
            how = f"the training {loader['dataset']} (an IterableDataset) yields the same items on every rank"
        else:
            how = f"the training DataLoader uses a {loader['sampler']}, not a DistributedSampler"
        return [_duplicate_finding(group, ranks, f"Ranks {', '.join(map(str, group))} read identical training "
                                   f"batches (the first {compared} compared are the same): {how}.",
                                   {"ranks": group, "batches_compared": compared})]
    sharing = _groups([r for r in ranks if whole_dataset(r)],
                      lambda a, b: _main_loader(a)["dataset_digest"] == _main_loader(b)["dataset_digest"])
    if sharing:
        group = sharing[0]
        loader = _main_loader(next(r for r in ranks if r["rank"] == group[0]))
        return [_duplicate_finding(group, ranks, f"Ranks {', '.join(map(str, group))} each read the whole of the "
                                   f"same dataset ({loader['dataset_len']} samples) through a {loader['sampler']} "
                                   "every epoch: no DistributedSampler shards it, so every rank sees every sample.",
                                   {"ranks": group, "dataset_len": loader["dataset_len"],
                                    "sampler": loader["sampler"]})]
    return []


def _duplicate_finding(group: list[int], ranks: list[dict[str, Any]], message: str, evidence: dict) -> Finding:
    return Finding("DDP003", message + f" {len(group)} processes do the work of one.",
                   location="training data loader (sampler)", evidence=evidence,
                   suggestions=["Give the DataLoader sampler=DistributedSampler(dataset) (and shuffle=False), "
                                "or shard the data by rank yourself."])


# ----- DDP004: batch-norm statistics from small per-rank batches ---------------------------------------------
def _unsynced_bn(ranks: list[dict[str, Any]]) -> list[Finding]:
    small = [r for r in ranks if r["unsynced_bn"] and r["batch_sizes"]
             and statistics.median(r["batch_sizes"]) < SMALL_BN_BATCH]
    if not small:
        return []
    layers = small[0]["unsynced_bn"]
    batch = statistics.median(small[0]["batch_sizes"])
    return [Finding(
        "DDP004", f"{len(layers)} batch-norm layer(s) ({', '.join('model.' + n for n in layers[:3])}"
        f"{', ...' if len(layers) > 3 else ''}) normalise with the statistics of each rank's own batch of {batch:g} "
        f"samples (below {SMALL_BN_BATCH}), not synchronised across ranks (no SyncBatchNorm) [{_ranks([r['rank'] for r in small], ranks[0]['world_size'])}].",
        location="model." + layers[0],
        evidence={"ranks": [r["rank"] for r in small], "per_rank_batch": batch, "layers": layers[:20]},
        suggestions=["model = nn.SyncBatchNorm.convert_sync_batchnorm(model) before wrapping it in DDP, or a "
                     "larger per-rank batch."])]


def judge_rank(watcher: Any) -> list[Finding]:
    """Nothing from one rank alone: ranks are compared on rank 0 when the report is made (``live/ranks.py``)."""
    return []
