"""Lightning DDP (gloo, CPU) under torchrun with the nndoctor callback; rank 0 writes the merged report.

    torchrun --nproc_per_node=2 lightning_ddp.py REPORT.json [--batch N]

With a batch-norm layer and --batch 8 (per rank) the planted bug is DDP004; --batch 32 is its clean twin.
"""
import sys

import lightning.pytorch as pl
import torch
from sklearn.datasets import load_digits
from torch import nn

from nndoctor.integrations.lightning import NNDoctorCallback

report_path = sys.argv[1]
batch = int(sys.argv[sys.argv.index("--batch") + 1]) if "--batch" in sys.argv else 32


class Module(pl.LightningModule):
    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(64, 64), nn.BatchNorm1d(64), nn.ReLU(), nn.Linear(64, 10))

    def forward(self, x):
        return self.net(x)

    def training_step(self, batch, _):
        x, y = batch
        return nn.functional.cross_entropy(self(x), y)

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.05, momentum=0.9)


torch.manual_seed(0)
d = load_digits()
data = torch.utils.data.TensorDataset(torch.tensor(d.data, dtype=torch.float32) / 16.0, torch.tensor(d.target))
loader = torch.utils.data.DataLoader(data, batch_size=batch, shuffle=True, drop_last=True)
callback = NNDoctorCallback()
trainer = pl.Trainer(max_epochs=2, limit_train_batches=20, callbacks=[callback], logger=False,
                     enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                     accelerator="cpu", devices=2, strategy="ddp")
trainer.fit(Module(), loader)  # Lightning adds the DistributedSampler and calls set_epoch
report = callback.report()  # on every rank: rank 0 receives the others' findings
if trainer.global_rank == 0:
    with open(report_path, "w") as f:
        f.write(report.to_json())
