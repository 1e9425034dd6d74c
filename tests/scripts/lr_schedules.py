"""A tiny classifier trained with a learning-rate schedule, for `nndoctor run`: `--bug NAME` plants one
schedule bug; without it the loop is the fixed twin (StepLR stepped once per epoch, warm-up to a sane
peak, scheduler.step() after optimizer.step())."""
import argparse

import torch
from torch import nn

p = argparse.ArgumentParser()
p.add_argument("--bug", default="", choices=["", "per-batch", "warmup-peak", "sched-first"])
args = p.parse_args()
bug = args.bug

torch.manual_seed(0)
x = torch.randn(1024, 20)
y = (x[:, :4] @ torch.tensor([1.0, -2.0, 1.5, 0.5]) > 0).long() + 2 * (x[:, 4] > 0).long()
model = nn.Sequential(nn.Linear(20, 64), nn.ReLU(), nn.Linear(64, 4))
optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
if bug == "warmup-peak":  # linear warm-up over 20 steps to 400x the base LR: diverges at the peak
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: 400 * min(1.0, (s + 1) / 20))
else:
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=10, gamma=0.5)  # written for epochs

for epoch in range(8):
    if bug == "sched-first":  # the pre-1.1 order: the schedule's first value is skipped
        scheduler.step()
    for i in range(0, 1024, 32):
        loss = nn.functional.cross_entropy(model(x[i:i + 32]), y[i:i + 32])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if bug in ("per-batch", "warmup-peak"):
            scheduler.step()
    if bug == "":
        scheduler.step()
print(f"final loss {loss.item():.4f}")
