"""A small training script with two wasted-compute patterns, each switched by an argument so that the fixed
twin differs only by the fix:
  --data slow   a Dataset that decodes each sample slowly in __getitem__ (EFF001); fast: the same samples in memory
  --decay all   AdamW with weight decay on every parameter (EFF002); split: nanoGPT's groups (dim >= 2 decayed)
"""
import argparse
import time

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

parser = argparse.ArgumentParser()
parser.add_argument("--data", choices=["slow", "fast"], default="slow")
parser.add_argument("--decay", choices=["all", "split"], default="all")
parser.add_argument("--steps", type=int, default=16)
args = parser.parse_args()


class Samples(Dataset):
    def __init__(self, n: int, decode_seconds: float):
        g = torch.Generator().manual_seed(0)
        self.x, self.y = torch.randn(n, 16, generator=g), torch.randint(0, 50, (n, 8), generator=g)
        self.decode_seconds = decode_seconds

    def __len__(self):
        return len(self.x)

    def __getitem__(self, i):
        if self.decode_seconds:
            time.sleep(self.decode_seconds)  # stands for reading and decoding a file
        return self.y[i], self.y[i].roll(-1)


class Tagger(nn.Module):
    def __init__(self):
        super().__init__()
        self.emb = nn.Embedding(50, 32)
        self.norm = nn.LayerNorm(32)
        self.head = nn.Linear(32, 50)

    def forward(self, idx):
        return self.head(self.norm(self.emb(idx)))  # (B, T, 50)


torch.manual_seed(0)
torch.set_num_threads(1)  # a tiny model: one thread is its fastest, and steadier on a busy machine
model = Tagger()
data = Samples(4 * args.steps, 0.02 if args.data == "slow" else 0.0)
loader = DataLoader(data, batch_size=4, shuffle=True)
if args.decay == "all":
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.1)
else:
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW([{"params": [p for p in params if p.dim() >= 2], "weight_decay": 0.1},
                                   {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0}], lr=1e-3)
step = 0
for idx, targets in loader:
    logits = model(idx)
    loss = nn.functional.cross_entropy(logits.flatten(0, 1), targets.flatten())
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    step += 1
print(f"done {step} steps, loss {loss.item():.3f}")
