"""How `check` time grows with dataset size, model size and input resolution (three sizes each).

Nothing should grow with dataset size beyond the sample the checks use. Prints a table of the report's own
seconds (import excluded), the process's CPU seconds and the slowest check; asserts nothing.

    python bench/bench_scale.py [--mode quick|default|thorough] [--budget SECONDS]
"""
from __future__ import annotations

import argparse
import time

import torch
from torch import nn

import nndoctor


def _classes(x: torch.Tensor, k: int = 10) -> torch.Tensor:
    """Labels that depend on the inputs (a fixed random projection), so that the data carries signal."""
    g = torch.Generator().manual_seed(1)
    w = torch.randn(x[0].numel(), k, generator=g)
    return (x.reshape(len(x), -1) @ w).argmax(1)


def mlp(samples: int, hidden: int = 128, features: int = 64) -> nndoctor.Setup:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(samples, features, generator=g)
    model = nn.Sequential(nn.Linear(features, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU(),
                          nn.Linear(hidden, 10))
    return nndoctor.Setup(model=model, train_data=(x, _classes(x)), loss_fn=nn.CrossEntropyLoss())


def cnn(pixels: int, samples: int = 512) -> nndoctor.Setup:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(samples, 3, pixels, pixels, generator=g)
    model = nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(), nn.MaxPool2d(2),
                          nn.Conv2d(16, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(),
                          nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(32, 10))
    return nndoctor.Setup(model=model, train_data=(x, _classes(x)), loss_fn=nn.CrossEntropyLoss(), batch_size=32)


AXES = [
    ("dataset size", [(f"{n:,} samples", lambda n=n: mlp(n)) for n in (1_000, 10_000, 100_000)]),
    ("model size", [(f"MLP width {w}", lambda w=w: mlp(2_000, hidden=w)) for w in (64, 512, 2048)]),
    ("input resolution", [(f"CNN {p}x{p}", lambda p=p: cnn(p)) for p in (16, 32, 64)]),
]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--mode", default="quick", choices=("quick", "default", "thorough"))
    parser.add_argument("--budget", type=float, default=None)
    args = parser.parse_args()
    budget = args.budget if args.budget is not None else "auto"
    nndoctor.check(mlp(256), mode="quick", select="RUN001", progress=False)  # one-time imports, outside the table
    print(f"mode {args.mode}, budget {budget}")
    print(f"{'axis':<18}{'setup':<20}{'check s':>9}{'cpu s':>7}  {'budget reached':<15}slowest check")
    for axis, cases in AXES:
        for label, build in cases:
            setup = build()
            cpu = time.process_time()  # CPU seconds: a busy machine swings wall seconds, not these
            report = nndoctor.check(setup, mode=args.mode, budget=budget, progress=False)
            cpu = time.process_time() - cpu
            slowest = max(report.checks, key=lambda c: c.seconds)
            reached = str(report.meta.get("budget_reached", "?"))
            print(f"{axis:<18}{label:<20}{report.meta['seconds']:>9.2f}{cpu:>7.2f}  {reached:<15}"
                  f"{slowest.name} {slowest.seconds:.2f}s", flush=True)


if __name__ == "__main__":
    main()
