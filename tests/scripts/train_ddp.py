"""A DistributedDataParallel digits script with switchable planted bugs (clean when no flag is given).

    torchrun --nproc_per_node=2 train_ddp.py [--no-wrap] [--rank0-reinit] [--no-set-epoch] [--no-sampler]
        [--seed-by-rank] [--bn] [--batch N] [--epochs N] [--schedule] [--val-all-ranks] [--crash] [--crash-rank R] [--manual-batches] [--iterable] [--with-monitor JSON]

gloo backend, CPU. Each worker ends with a barrier and destroy_process_group, as a clean DDP script should.
"""
import argparse
import os

import torch
import torch.distributed as dist
from sklearn.datasets import load_digits
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, DistributedSampler, TensorDataset

parser = argparse.ArgumentParser()
parser.add_argument("--no-wrap", action="store_true", help="DDP001: no DDP wrapper, replicas drift apart")
parser.add_argument("--rank0-reinit", action="store_true", help="DDP001: rank 0 re-initialises a layer after DDP")
parser.add_argument("--no-set-epoch", action="store_true", help="DDP002")
parser.add_argument("--no-sampler", action="store_true", help="DDP003: every rank reads the whole dataset")
parser.add_argument("--seed-by-rank", action="store_true", help="a different seed on each rank")
parser.add_argument("--manual-batches", action="store_true", help="slice tensors instead of a DataLoader")
parser.add_argument("--iterable", action="store_true", help="an IterableDataset (sharded by rank unless --no-sampler)")
parser.add_argument("--bn", action="store_true", help="a batch-norm layer (DDP004 with small --batch)")
parser.add_argument("--batch", type=int, default=32)
parser.add_argument("--epochs", type=int, default=3)
parser.add_argument("--schedule", action="store_true")
parser.add_argument("--val-all-ranks", action="store_true", help="validation sharded over every rank, all-reduced")
parser.add_argument("--crash", action="store_true", help="a shape error in the forward pass, on every rank")
parser.add_argument("--crash-rank", type=int, default=-1, help="that rank alone crashes (the others wait in a collective)")
parser.add_argument("--with-monitor", metavar="JSON", help="train inside nndoctor.Monitor; rank 0 writes the report")
args = parser.parse_args()

dist.init_process_group("gloo")
rank, world = dist.get_rank(), dist.get_world_size()
torch.manual_seed(rank if args.seed_by_rank else 0)

d = load_digits()
x = torch.tensor(d.data, dtype=torch.float32) / 16.0
y = torch.tensor(d.target)
train_set = TensorDataset(x[:1400], y[:1400])
xv, yv = x[1400:], y[1400:]

norm = [nn.BatchNorm1d(64)] if args.bn else []
net = nn.Sequential(nn.Linear(64, 64), *norm, nn.ReLU(), nn.Dropout(0.1), nn.Linear(64, 10))
model = net if args.no_wrap else DistributedDataParallel(net)
if args.rank0_reinit and rank == 0:
    nn.init.normal_(net[0].weight)  # after DDP's broadcast: only rank 0 has these weights now

optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=30, gamma=0.5) if args.schedule else None
loss_fn = nn.CrossEntropyLoss()
class Stream(torch.utils.data.IterableDataset):
    """Yields (x, y) pairs; shards by rank, as an IterableDataset must, unless --no-sampler."""

    def __iter__(self):
        xt, yt = train_set.tensors
        start, step = (0, 1) if args.no_sampler else (rank, world)
        for i in range(start, len(yt), step):
            yield xt[i], yt[i]


if args.iterable:
    sampler, loader = None, DataLoader(Stream(), batch_size=args.batch)
elif args.no_sampler:
    sampler, loader = None, DataLoader(train_set, batch_size=args.batch, shuffle=True)
else:
    sampler = DistributedSampler(train_set, shuffle=True, seed=0)
    loader = DataLoader(train_set, batch_size=args.batch, sampler=sampler)


def batches():
    if not args.manual_batches:
        yield from loader
        return
    xt, yt = train_set.tensors
    if not args.no_sampler:  # shard by rank; with --no-sampler every rank slices the same tensors
        xt, yt = xt[rank::world], yt[rank::world]
    for i in range(0, len(yt), args.batch):
        yield xt[i:i + args.batch], yt[i:i + args.batch]


def train():
    for epoch in range(args.epochs):
        train_epoch(epoch)


def train_epoch(epoch):
    if sampler is not None and not args.no_set_epoch:
        sampler.set_epoch(epoch)
    model.train()
    for xb, yb in batches():
        optimizer.zero_grad()
        crash = args.crash or rank == args.crash_rank
        loss = loss_fn(model(xb[:, :32] if crash else xb), yb)
        loss.backward()
        optimizer.step()
        if scheduler:
            scheduler.step()
    if args.val_all_ranks:  # every rank scores its shard through the DDP model; the counts are summed
        model.eval()
        correct = torch.zeros(2)
        with torch.no_grad():
            for xb, yb in DataLoader(TensorDataset(xv, yv), batch_size=64,
                                     sampler=DistributedSampler(TensorDataset(xv, yv), shuffle=False)):
                correct += torch.tensor([(model(xb).argmax(1) == yb).sum().item(), len(yb)])
        dist.all_reduce(correct)
        if rank == 0:
            print(f"epoch {epoch}: loss {loss.item():.4f} val acc {correct[0] / correct[1]:.3f}", flush=True)
    elif rank == 0:  # validation on rank 0 only, done right: the unwrapped net (a DDP forward on one rank
        net.eval()  # may broadcast buffers and hang), eval mode, no gradients; train() again next epoch
        with torch.no_grad():
            acc = (net(xv).argmax(1) == yv).float().mean().item()
        print(f"epoch {epoch}: loss {loss.item():.4f} val acc {acc:.3f}", flush=True)
    dist.barrier()


if args.with_monitor:  # the Monitor API in the user's own loop: every rank calls report(), rank 0 gets all
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
print(f"rank {rank} done (pid {os.getpid()})", flush=True)
