"""An FSDP2 (``torch.distributed.fsdp.fully_shard``) digits script with switchable planted bugs (clean
when no flag is given). gloo backend, CPU.

    torchrun --nproc_per_node=2 train_fsdp.py [--no-set-epoch] [--no-sampler] [--lr0] [--frozen] [--epochs N]
        [--with-monitor JSON] [--device cuda]

With ``--device cuda`` each rank trains on its local GPU over NCCL (one rank per GPU)."""
import os
import argparse

import torch
import torch.distributed as dist
from sklearn.datasets import load_digits
from torch import nn
from torch.distributed.fsdp import fully_shard
from torch.utils.data import DataLoader, DistributedSampler, TensorDataset

parser = argparse.ArgumentParser()
parser.add_argument("--no-set-epoch", action="store_true", help="DDP002")
parser.add_argument("--no-sampler", action="store_true", help="DDP003: every rank reads the whole dataset")
parser.add_argument("--lr0", action="store_true", help="GRD002: a learning rate of 0, the weights never move")
parser.add_argument("--frozen", action="store_true", help="GRD001: the first layer detached from the loss")
parser.add_argument("--epochs", type=int, default=3)
parser.add_argument("--with-monitor", metavar="JSON", help="train inside nndoctor.Monitor; rank 0 writes the report")
parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
args = parser.parse_args()

if args.device == "cuda":
    torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", 0)))
dist.init_process_group("nccl" if args.device == "cuda" else "gloo")
rank, world = dist.get_rank(), dist.get_world_size()
torch.manual_seed(0)

d = load_digits()
x = torch.tensor(d.data, dtype=torch.float32) / 16.0
y = torch.tensor(d.target)
train_set = TensorDataset(x[:1400], y[:1400])


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.embed = nn.Linear(64, 64)
        self.hidden = nn.Linear(64, 64)
        self.head = nn.Linear(64, 10)
        self.temperature = nn.Parameter(torch.ones(1))  # one element: rank 1's shard of it is empty

    def forward(self, xb):
        h = torch.relu(self.embed(xb))
        if args.frozen:
            h = h.detach()
        return self.head(torch.relu(self.hidden(h))) / self.temperature


model = Net().to(args.device)
for layer in (model.embed, model.hidden, model.head):
    fully_shard(layer)
fully_shard(model)

optimizer = torch.optim.AdamW(model.parameters(), lr=0.0 if args.lr0 else 3e-3)
loss_fn = nn.CrossEntropyLoss()
if args.no_sampler:
    sampler, loader = None, DataLoader(train_set, batch_size=32, shuffle=True)
else:
    sampler = DistributedSampler(train_set, shuffle=True, seed=0)
    loader = DataLoader(train_set, batch_size=32, sampler=sampler)


def train():
    for epoch in range(args.epochs):
        if sampler is not None and not args.no_set_epoch:
            sampler.set_epoch(epoch)
        model.train()
        for xb, yb in loader:
            xb, yb = xb.to(args.device), yb.to(args.device)
            optimizer.zero_grad()
            loss = loss_fn(model(xb), yb)
            loss.backward()
            optimizer.step()
        if rank == 0:
            print(f"epoch {epoch}: loss {loss.item():.4f}", flush=True)


if args.with_monitor:
    import nndoctor

    with nndoctor.Monitor(model, optimizer) as mon:
        train()
    report = mon.report()
    if rank == 0:
        with open(args.with_monitor, "w") as f:
            f.write(report.to_json())
else:
    train()

dist.barrier()
dist.destroy_process_group()
print(f"rank {rank} done", flush=True)
