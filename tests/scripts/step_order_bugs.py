"""A tiny training loop with gradient accumulation, clipping and mixed precision, for `nndoctor run`:
`--bug NAME` plants one bug of the step's order or precision; without it the loop is the fixed twin
(zero_grad once per optimizer step, loss / ACCUM, unscale_ before clipping, the loss in float32)."""
import argparse

import torch
from torch import nn

p = argparse.ArgumentParser()
p.add_argument("--bug", default="", choices=["", "accumulation-reset", "not-averaged", "zero-before-step",
                                             "clip-before-backward", "clip-scaled", "low-precision-loss",
                                             "softmax-by-hand"])
p.add_argument("--amp", action="store_true")
p.add_argument("--steps", type=int, default=24)
args = p.parse_args()
bug = args.bug
amp = args.amp or bug in ("clip-scaled", "low-precision-loss", "softmax-by-hand")
ACCUM = 4

torch.manual_seed(0)
x, y = torch.randn(512, 20), torch.randint(0, 4, (512,))
model = nn.Sequential(nn.Linear(20, 64), nn.ReLU(), nn.Linear(64, 4))
optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
scaler = torch.amp.GradScaler("cpu", enabled=amp)

for step in range(args.steps):
    if bug == "clip-before-backward":
        torch.nn.utils.clip_grad_norm_(model.parameters(), 0.1)
    for micro in range(ACCUM):
        if bug == "accumulation-reset":
            optimizer.zero_grad()
        i = (step * ACCUM + micro) * 16 % 512
        with torch.autocast("cpu", dtype=torch.float16, enabled=amp):
            out = model(x[i:i + 16])
            if bug == "low-precision-loss":
                loss = ((out - 100 * nn.functional.one_hot(y[i:i + 16], 4)) ** 2).sum() / 1000  # float16 sum: Inf
            elif bug == "softmax-by-hand":  # exp(20) overflows float16: Inf / Inf = NaN, every step skipped
                e = (out * 20).exp()
                loss = -(e / e.sum(1, keepdim=True)).gather(1, y[i:i + 16, None]).log().mean()
            else:
                loss = nn.functional.cross_entropy(out.float(), y[i:i + 16])
        if bug != "not-averaged":
            loss = loss / ACCUM
        scaler.scale(loss).backward()
    if bug == "zero-before-step":
        optimizer.zero_grad()
    if bug != "clip-before-backward":
        if bug != "clip-scaled":
            scaler.unscale_(optimizer)
        torch.nn.utils.clip_grad_norm_(model.parameters(), 0.1)
    scaler.step(optimizer)
    scaler.update()
    if bug not in ("accumulation-reset", "zero-before-step"):
        optimizer.zero_grad(set_to_none=True)
print("done")
