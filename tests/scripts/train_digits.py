"""A plain digits training script with switchable planted bugs (the clean version when no flag is given).

    python train_digits.py [--no-zero-grad] [--eval-mode-training] [--eval-in-train-mode]
                           [--lr LR] [--foreign-optimizer] [--nan] [--crash] [--epochs N] [--schedule]
                           [--ascent] [--shuffled-labels]
"""
import argparse
import sys

import torch
from sklearn.datasets import load_digits
from torch import nn

parser = argparse.ArgumentParser()
parser.add_argument("--no-zero-grad", action="store_true")
parser.add_argument("--eval-mode-training", action="store_true")
parser.add_argument("--eval-in-train-mode", action="store_true")
parser.add_argument("--foreign-optimizer", action="store_true")
parser.add_argument("--nan", action="store_true")
parser.add_argument("--crash", action="store_true")
parser.add_argument("--ascent", action="store_true")
parser.add_argument("--schedule", action="store_true")
parser.add_argument("--shuffled-labels", action="store_true", help="labels drawn at random for every batch")
parser.add_argument("--lr", type=float, default=1e-3)
parser.add_argument("--epochs", type=int, default=3)
args = parser.parse_args()

torch.manual_seed(0)
d = load_digits()
x = torch.tensor(d.data, dtype=torch.float32) / 16.0
y = torch.tensor(d.target)
xt, yt, xv, yv = x[:1400], y[:1400], x[1400:], y[1400:]


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(nn.Linear(64, 128), nn.ReLU(), nn.Dropout(0.2), nn.Linear(128, 10))

    def forward(self, inputs):
        h = inputs
        if args.nan:
            h = torch.log(inputs - 0.5)  # negative values -> NaN
        if args.crash:
            h = h.view(-1, 32)  # wrong reshape: the Linear gets 32 features
        return self.body(h)


model = Net()
other = Net()
optimizer = torch.optim.Adam((other if args.foreign_optimizer else model).parameters(), lr=args.lr)
scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=20, gamma=0.5) if args.schedule else None
loss_fn = nn.CrossEntropyLoss()
sign = -1.0 if args.ascent else 1.0

for epoch in range(args.epochs):
    model.train()
    if args.eval_mode_training:
        model.eval()
    for i in range(0, len(yt), 64):
        xb, yb = xt[i:i + 64], yt[i:i + 64]
        if args.shuffled_labels:
            yb = torch.randint(0, 10, yb.shape)
        if not args.no_zero_grad:
            optimizer.zero_grad()
        loss = sign * loss_fn(model(xb), yb)
        loss.backward()
        optimizer.step()
        if scheduler:
            scheduler.step()
    if not args.eval_in_train_mode:
        model.eval()
    with torch.no_grad():
        acc = (model(xv).argmax(1) == yv).float().mean().item()
    print(f"epoch {epoch}: loss {loss.item():.4f} val acc {acc:.3f}")
sys.exit(0)
