"""Overhead of the Monitor on DistributedDataParallel training (gloo, CPU), and the cost of the merge.

Run under torchrun; plain and monitored blocks of steps are interleaved in one process per rank. Each
monitored block is a fresh Monitor, so it pays every per-run cost (the first batches hashed, checksums
after steps 1, 2, 4, ...): an upper bound on the steady-state overhead. Rank 0 prints the ratio of
median block times, and the seconds ``report()`` takes to gather and judge every rank's summary.

    torchrun --standalone --nproc_per_node=2 bench/bench_ddp.py [--steps 40] [--rounds 5] [--width 256]
"""
from __future__ import annotations

import argparse
import statistics
import time
import warnings

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, DistributedSampler, TensorDataset

from nndoctor import Monitor


def timed_block(model, opt, loader, steps: int) -> float:
    dist.barrier()
    t0 = time.perf_counter()
    done = 0
    while done < steps:
        loader.sampler.set_epoch(loader.sampler.epoch + 1)
        for x, y in loader:
            opt.zero_grad()
            nn.functional.cross_entropy(model(x), y).backward()
            opt.step()
            done += 1
            if done == steps:
                break
    return (time.perf_counter() - t0) / steps


def main() -> None:
    warnings.filterwarnings("ignore")
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--width", type=int, default=256)
    args = parser.parse_args()
    dist.init_process_group("gloo")
    rank = dist.get_rank()
    torch.manual_seed(0)
    data = TensorDataset(torch.randn(4096, 64), torch.randint(0, 10, (4096,)))
    sampler = DistributedSampler(data, seed=0)
    loader = DataLoader(data, batch_size=64, sampler=sampler)
    w = args.width
    model = DistributedDataParallel(nn.Sequential(nn.Linear(64, w), nn.BatchNorm1d(w), nn.ReLU(),
                                                  nn.Linear(w, w), nn.ReLU(), nn.Linear(w, 10)))
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    timed_block(model, opt, loader, 5)  # warm-up
    plain, monitored = [], []
    for _ in range(args.rounds):
        plain.append(timed_block(model, opt, loader, args.steps))
        with Monitor() as mon:
            monitored.append(timed_block(model, opt, loader, args.steps))
    t0 = time.perf_counter()
    report = mon.report()  # every rank: the exchange (the last block's Monitor)
    merge_s = time.perf_counter() - t0
    if rank == 0:
        p = statistics.median(plain)
        print(f"ddp-mlp (2 ranks, width {w}) plain {p * 1e3:7.2f} ms/step   "
              f"Monitor {statistics.median(monitored) / p:5.2f}x   report() with merge {merge_s:.3f} s   "
              f"findings {sorted(report.codes()) or 'none'}")
    dist.barrier()
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
