"""A slow setup that says where it is on stdout, so that tests wait for a line instead of sleeping.

Prints "setup: imported" when the file is loaded (nndoctor is still starting up) and "setup: reading
data" the first time a sample is read (the playbook has started)."""
import sys
import time

import torch
from torch import nn
from torch.utils.data import Dataset

import nndoctor

print("setup: imported", flush=True)


class SleepyDataset(Dataset):
    announced = False

    def __len__(self):
        return 64

    def __getitem__(self, i):
        if not SleepyDataset.announced:
            SleepyDataset.announced = True
            print("setup: reading data", flush=True)
            sys.stdout.flush()
        time.sleep(0.25)
        torch.manual_seed(i)
        return torch.randn(8), i % 2


def setup():
    model = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 2))
    return nndoctor.Setup(model=model, train_data=SleepyDataset(), loss_fn=nn.CrossEntropyLoss(), batch_size=32)
