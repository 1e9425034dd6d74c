"""A setup whose data loader is very slow (each batch sleeps), to test --budget and Ctrl-C."""
import time

import torch
from torch import nn
from torch.utils.data import Dataset

import nndoctor


class SleepyDataset(Dataset):
    def __len__(self):
        return 64

    def __getitem__(self, i):
        time.sleep(0.25)
        torch.manual_seed(i)
        return torch.randn(8), i % 2


def setup():
    model = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 2))
    return nndoctor.Setup(model=model, train_data=SleepyDataset(), loss_fn=nn.CrossEntropyLoss(), batch_size=32)
