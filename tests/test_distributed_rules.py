"""The per-rank probe (in one process, as one rank of two) and the cross-rank judgement on its summaries.

The real multi-process runs are in test_ddp.py; these pin the edges of each rule quickly: what the probe
records from a real DataLoader loop, and which differences between ranks are (and are not) findings.
"""
from __future__ import annotations

import copy

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, DistributedSampler, TensorDataset

from nndoctor.checks import distributed
from nndoctor.probes.rank_facts import RankFacts, digest


def _rank_summary(monkeypatch, rank: int, *, sampler: bool = True, set_epoch: bool = True, eval_pass: bool = False,
                  batch: int = 16, bn: bool = False, seed: int = 0, epochs: int = 2,
                  rebuild: str = "") -> dict:
    """One rank of two trained through RankFacts' events, as the Monitor drives them."""
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", str(rank))
    torch.manual_seed(seed)
    data = TensorDataset(torch.randn(128, 8), torch.randint(0, 2, (128,)))
    dist_sampler = DistributedSampler(data, num_replicas=2, rank=rank, shuffle=True, seed=0) if sampler else None
    loader = DataLoader(data, batch_size=batch, sampler=dist_sampler, shuffle=dist_sampler is None)
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 8), *([nn.BatchNorm1d(8)] if bn else []), nn.Linear(8, 2))
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    steps = 0
    with RankFacts() as facts:
        for epoch in range(epochs):
            if rebuild:  # a new sampler and loader every epoch: seeded by the epoch, or not at all
                dist_sampler = DistributedSampler(data, num_replicas=2, rank=rank, shuffle=True,
                                                  seed=epoch if rebuild == "seeded" else 0)
                loader = DataLoader(data, batch_size=batch, sampler=dist_sampler)
            if dist_sampler is not None and set_epoch:
                dist_sampler.set_epoch(epoch)
            for x, y in loader:
                facts.on_training_forward(model, (x,))
                opt.zero_grad()
                nn.functional.cross_entropy(model(x), y).backward()
                facts.on_step()
                opt.step()
                steps += 1
                facts.after_step(steps)
            if eval_pass:  # accuracy on the training data: a pass without optimizer steps
                with torch.no_grad():
                    for x, _ in loader:
                        model(x)
    return facts.summary()


def _pair(monkeypatch, **kwargs) -> list[dict]:
    """Ranks 0 and 1. One process cannot all-reduce: rank 1 gets rank 0's parameter checksums, as averaged
    gradients would give it."""
    ranks = [_rank_summary(monkeypatch, r, **kwargs) for r in (0, 1)]
    ranks[1]["checksums"] = copy.deepcopy(ranks[0]["checksums"])
    return ranks


def _codes(ranks: list[dict]) -> list[str]:
    return [f.code for f in distributed.judge(ranks)]


def test_clean_ranks_are_silent(monkeypatch):
    assert _codes(_pair(monkeypatch)) == []


def test_probe_records_the_training_loader(monkeypatch):
    summary = _rank_summary(monkeypatch, 0)
    (loader,) = summary["training_loaders"]
    assert loader["sharded"] and loader["shuffle"] and loader["sampler"] == "DistributedSampler"
    assert [epoch for epoch, _ in loader["passes"]] == [0, 1] and loader["steps"] == 8
    assert sorted(summary["checksums"], key=int) == ["1", "2", "4", "8"]


def test_set_epoch_never_called_is_ddp002(monkeypatch):
    ranks = _pair(monkeypatch, set_epoch=False)
    (finding,) = distributed.judge(ranks)
    assert finding.code == "DDP002" and finding.evidence["ranks"] == [0, 1]


@pytest.mark.parametrize("rebuild,codes", [("unseeded", ["DDP002"]), ("seeded", [])])
def test_a_sampler_rebuilt_every_epoch_must_change_its_seed(monkeypatch, rebuild, codes):
    assert _codes(_pair(monkeypatch, set_epoch=False, rebuild=rebuild, epochs=3)) == codes


def test_a_second_pass_over_the_training_data_for_evaluation_is_not_an_epoch(monkeypatch):
    ranks = _pair(monkeypatch, eval_pass=True, epochs=1)
    assert _codes(ranks) == []


def test_same_batches_on_every_rank_is_ddp003(monkeypatch):
    ranks = _pair(monkeypatch, sampler=False)
    assert _codes(ranks) == ["DDP003"]


def test_whole_dataset_on_every_rank_in_different_orders_is_ddp003(monkeypatch):
    ranks = [_rank_summary(monkeypatch, r, sampler=False, seed=r) for r in (0, 1)]
    ranks[1]["checksums"] = ranks[0]["checksums"]
    ranks[1]["training_loaders"][0]["batch_hashes"] = ranks[1]["training_loaders"][0]["batch_hashes"][::-1]
    # the datasets were built from different seeds here: same data is what makes it a bug
    assert _codes(ranks) == []
    same_data = copy.deepcopy(ranks)
    same_data[1]["training_loaders"][0]["dataset_digest"] = same_data[0]["training_loaders"][0]["dataset_digest"]
    assert _codes(same_data) == ["DDP003"]


def test_diverged_parameters_are_ddp001_at_the_first_step_they_differ(monkeypatch):
    ranks = _pair(monkeypatch)
    ranks[1]["checksums"]["4"]["1.bias"] = [9.0, 81.0]
    ranks[1]["checksums"]["8"]["1.bias"] = [9.5, 90.0]
    (finding,) = distributed.judge(ranks)
    assert finding.code == "DDP001" and finding.evidence["step"] == 4 and finding.location == "model.1"


@pytest.mark.parametrize("batch,codes", [(8, ["DDP004"]), (32, [])])
def test_batchnorm_on_small_per_rank_batches_is_ddp004(monkeypatch, batch, codes):
    ranks = _pair(monkeypatch, bn=True, batch=batch)
    assert _codes(ranks) == codes


def test_one_rank_alone_is_never_judged(monkeypatch):
    assert _codes([_rank_summary(monkeypatch, 0, sampler=False)]) == []


def test_merge_names_the_ranks_once_per_finding():
    from nndoctor.findings import Finding

    a = Finding("MOD002", "evaluation in train mode", location="model")
    b = Finding("GRD005", "gradients accumulate", location="optimizer")
    merged = distributed.merge([(0, [a]), (1, [copy.deepcopy(a), b])], world_size=2)
    assert [(f.code, f.evidence["ranks"]) for f in merged] == [("MOD002", [0, 1]), ("GRD005", [1])]
    assert merged[0].message.endswith("[all 2 ranks]") and merged[1].message.endswith("[rank 1]")


def test_digest_tells_batches_apart_and_matches_equal_ones():
    x = torch.arange(12.0).reshape(3, 4)
    assert digest([x, torch.tensor([1, 2, 3])]) == digest([x.clone(), torch.tensor([1, 2, 3])])
    assert digest([x, torch.tensor([1, 2, 3])]) != digest([x + 1, torch.tensor([1, 2, 3])])
    assert digest({"a": x}) != digest({"b": x})
