"""DDP: distributed data-parallel training (every rank observed, one merged report on rank 0)."""
from nndoctor.catalogue import Code, Severity

CODES = [
    Code(
        code="DDP001",
        name="replica-divergence",
        severity=Severity.ERROR,
        summary="Parameters differ across ranks.",
        what="""
After optimizer steps, the model replicas on different ranks no longer hold the same parameters.
The finding names the ranks and the first parameters that differ.
""",
        why="""
Data-parallel training assumes identical replicas; once they diverge, each rank trains a different
model, gradients averaged across ranks no longer belong to any of them, and the checkpoint saved by
rank 0 is not what the other ranks evaluated.
""",
        example="""
torch.manual_seed(rank)                       # different initialisation on every rank
model = Net()                                 # ...and no DDP wrapper to broadcast rank 0's weights
opt.step()                                    # gradients never all-reduced
""",
        fix="""
Wrap the model in `DistributedDataParallel` (it broadcasts rank 0's parameters at construction and
all-reduces gradients), do not modify parameters outside the optimizer on some ranks only, and
seed identically before building the model.
""",
        ignore="Never for data-parallel training; ignore only for deliberately independent replicas (ensembles).",
    ),
    Code(
        code="DDP002",
        name="sampler-epoch-not-set",
        severity=Severity.WARNING,
        summary="DistributedSampler.set_epoch is never called: the same order every epoch.",
        what="""
A `DistributedSampler` shuffles with a seed derived from its epoch. Without `set_epoch(epoch)` at the
start of each epoch, every epoch sees the samples in exactly the same order.
""",
        why="The data is effectively never reshuffled, which hurts generalisation and convergence.",
        example="""
sampler = DistributedSampler(dataset, shuffle=True)
for epoch in range(10):
    for batch in DataLoader(dataset, sampler=sampler):   # same order every epoch
        ...
""",
        fix="""
for epoch in range(10):
    sampler.set_epoch(epoch)
    for batch in loader:
        ...
""",
        ignore="When training for a single epoch, or when the fixed order is intended.",
    ),
    Code(
        code="DDP003",
        name="duplicate-data-across-ranks",
        severity=Severity.ERROR,
        summary="Ranks see the same samples.",
        what="""
Two or more ranks read identical batches: the data loader has no `DistributedSampler` (or shards
by a rank that is the same on every process).
""",
        why="""
Every rank computes the same gradient, so N processes do the work of one: the effective batch and
the epoch are not what you think, and the extra hardware is wasted.
""",
        example="""
loader = DataLoader(dataset, batch_size=32, shuffle=False)   # no sampler: every rank reads it all
model = DDP(model)
""",
        fix="""
sampler = DistributedSampler(dataset)
loader = DataLoader(dataset, batch_size=32, sampler=sampler)
""",
        ignore="Never for data-parallel training.",
    ),
    Code(
        code="DDP004",
        name="unsynced-batchnorm",
        severity=Severity.WARNING,
        summary="Batch-norm with small per-rank batches and no SyncBatchNorm.",
        what="""
Batch-norm layers compute their statistics from each rank's own batch. When the per-rank batch is
small, those statistics are noisy and differ across ranks.
""",
        why="""
Noisy batch statistics hurt accuracy and make the running statistics unreliable; the model trained
with N ranks behaves like one trained with a batch N times smaller.
""",
        example="""
model = DDP(ResNet())          # BatchNorm2d, 4 samples per rank
""",
        fix="""
model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
model = DDP(model)
""",
        ignore="When the per-rank batch is large (32 or more samples per batch-norm layer).",
    ),
]
