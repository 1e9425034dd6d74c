"""A small conv net with a wide classifier, trained on a GPU, with the GPU's wasted-compute patterns switched by
arguments so that the fixed twin differs only by the fix:
  --precision fp32      plain float32 on a GPU with bfloat16 (EFF005); bf16: autocast
  --classes 1001        a large Linear's output not a multiple of 8 under bf16 (EFF003); 1008: padded
  --layout nchw         convolutions in channels-first layout under bf16 (EFF004); nhwc: channels_last
  --data slow           a Dataset that decodes each sample slowly (EFF001); fast: batches already on the GPU
"""
import argparse
import time
from contextlib import nullcontext

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

parser = argparse.ArgumentParser()
parser.add_argument("--device", default="cuda")
parser.add_argument("--precision", choices=["fp32", "bf16"], default="bf16")
parser.add_argument("--classes", type=int, default=1008)
parser.add_argument("--layout", choices=["nchw", "nhwc"], default="nhwc")
parser.add_argument("--data", choices=["slow", "fast"], default="fast")
parser.add_argument("--steps", type=int, default=20)
args = parser.parse_args()
torch.manual_seed(0)
layout = torch.channels_last if args.layout == "nhwc" else torch.contiguous_format


class Net(nn.Module):
    def __init__(self, classes):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 64, 3, padding=1), nn.BatchNorm2d(64), nn.ReLU(),
            nn.Conv2d(64, 64, 3, padding=1), nn.BatchNorm2d(64), nn.ReLU(), nn.MaxPool2d(4))  # (B, 64, 8, 8)
        self.classifier = nn.Linear(64 * 8 * 8, classes)

    def forward(self, x):
        return self.classifier(self.features(x).flatten(1))


class Images(Dataset):
    def __init__(self, n):
        self.x, self.y = torch.randn(n, 3, 32, 32), torch.randint(0, args.classes, (n,))

    def __len__(self):
        return len(self.x)

    def __getitem__(self, i):
        time.sleep(0.001)  # stands for reading and decoding an image file
        return self.x[i], self.y[i]


model = Net(args.classes).to(args.device).to(memory_format=layout)
optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
autocast = torch.autocast("cuda", dtype=torch.bfloat16) if args.precision == "bf16" else nullcontext()
if args.data == "slow":
    batches = DataLoader(Images(64 * args.steps), batch_size=64)
else:
    x, y = torch.randn(args.steps, 64, 3, 32, 32, device=args.device), torch.randint(0, args.classes, (args.steps, 64), device=args.device)
    batches = list(zip(x, y))
for xb, yb in batches:
    xb, yb = xb.to(args.device, non_blocking=True).contiguous(memory_format=layout), yb.to(args.device)
    with autocast:
        loss = nn.functional.cross_entropy(model(xb), yb)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
print(f"done {len(batches)} steps, loss {loss.item():.3f}")
