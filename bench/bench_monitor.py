"""Overhead of the Monitor on a plain training step, next to torch.autograd.detect_anomaly.

Plain, monitored and anomaly-mode steps are interleaved in one process (round-robin blocks), on an
MLP, a CNN with batch-norm and a small transformer, CPU. Prints the ratio of median step times.

    python bench/bench_monitor.py [--steps 60] [--rounds 5]
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch
from torch import nn

from nndoctor import Monitor


def mlp():
    return nn.Sequential(nn.Linear(256, 512), nn.ReLU(), nn.Linear(512, 512), nn.ReLU(), nn.Linear(512, 10)), \
        torch.randn(128, 256), torch.randint(0, 10, (128,))


def cnn():
    model = nn.Sequential(nn.Conv2d(3, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(), nn.MaxPool2d(2),
                          nn.Conv2d(32, 64, 3, padding=1), nn.BatchNorm2d(64), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
                          nn.Flatten(), nn.Linear(64, 10))
    return model, torch.randn(32, 3, 32, 32), torch.randint(0, 10, (32,))


class Transformer(nn.Module):
    def __init__(self):
        super().__init__()
        self.emb = nn.Embedding(1000, 128)
        layer = nn.TransformerEncoderLayer(128, 4, 256, batch_first=True)
        self.enc = nn.TransformerEncoder(layer, 4)
        self.out = nn.Linear(128, 10)

    def forward(self, x):
        return self.out(self.enc(self.emb(x)).mean(1))


def transformer():
    return Transformer(), torch.randint(0, 1000, (32, 32)), torch.randint(0, 10, (32,))


def timed_steps(model, opt, x, y, steps: int) -> float:
    loss_fn = nn.CrossEntropyLoss()
    t0 = time.perf_counter()
    for _ in range(steps):
        opt.zero_grad()
        loss_fn(model(x), y).backward()
        opt.step()
    return (time.perf_counter() - t0) / steps


def bench(name, build, steps: int, rounds: int) -> None:
    torch.manual_seed(0)
    model, x, y = build()
    opt = torch.optim.Adam(model.parameters(), lr=1e-4)
    timed_steps(model, opt, x, y, 5)  # warm-up
    results = {"plain": [], "monitor": [], "detect_anomaly": []}
    for _ in range(rounds):
        results["plain"].append(timed_steps(model, opt, x, y, steps))
        with Monitor(model, opt):
            results["monitor"].append(timed_steps(model, opt, x, y, steps))
        with torch.autograd.detect_anomaly(check_nan=True):
            results["detect_anomaly"].append(timed_steps(model, opt, x, y, steps))
    plain = statistics.median(results["plain"])
    mon = statistics.median(results["monitor"]) / plain
    anomaly = statistics.median(results["detect_anomaly"]) / plain
    print(f"{name:<12} plain {plain * 1e3:7.2f} ms/step   Monitor {mon:5.2f}x   detect_anomaly {anomaly:5.2f}x")


def main() -> None:
    import warnings

    warnings.filterwarnings("ignore")
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    for name, build in (("mlp", mlp), ("cnn-bn", cnn), ("transformer", transformer)):
        bench(name, build, args.steps, args.rounds)


if __name__ == "__main__":
    main()
