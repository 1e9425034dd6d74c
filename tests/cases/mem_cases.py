"""RUN004: a training step that does not fit the device's memory. The twin gets a device that is large enough."""
from __future__ import annotations

import torch
from torch import nn

from nndoctor import Setup

from . import Case

IMAGE_BUDGET = "96MiB"  # one step at batch 64 needs about 176 MiB: the largest batch that fits is in the 30s
ROOMY_BUDGET = "512MiB"


class ImageCNN(nn.Module):
    """A small CNN on 128x128 RGB images: its early feature maps dominate the memory of a step."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.MaxPool2d(2),  # (N, 8, 64, 64)
            nn.Conv2d(8, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(), nn.MaxPool2d(2),  # (N, 16, 32, 32)
            nn.Conv2d(16, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(), nn.AdaptiveAvgPool2d(1),  # (N, 32, 1, 1)
        )
        self.head = nn.Linear(32, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x).flatten(1))  # (N, 10)


def large_images(budget: str, batch_size: int = 64) -> Setup:
    torch.manual_seed(0)
    x = torch.rand(batch_size, 3, 128, 128)  # memory depends on shapes only: random pixels will do
    y = torch.randint(0, 10, (batch_size,))
    return Setup(model=ImageCNN(), train_data=(x, y), loss_fn=nn.CrossEntropyLoss(), batch_size=batch_size,
                 optimizer=lambda params: torch.optim.Adam(params, lr=1e-3), memory_budget=budget)


WIDE_BUDGET = "512MiB"  # one step at batch 64 needs about 925 MiB; batch 32 about 463 MiB


class WideImageCNN(nn.Module):
    """A wider CNN on 128x128 images: full-resolution 32-channel maps make a step at batch 64 need ~0.9 GiB."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(),  # (N, 32, 128, 128)
            nn.Conv2d(32, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(), nn.MaxPool2d(2),  # (N, 32, 64, 64)
            nn.Conv2d(32, 64, 3, padding=1), nn.BatchNorm2d(64), nn.ReLU(), nn.MaxPool2d(2),  # (N, 64, 32, 32)
            nn.Conv2d(64, 128, 3, padding=1), nn.BatchNorm2d(128), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
        )
        self.head = nn.Linear(128, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x).flatten(1))


def wide_images(batch_size: int = 64, budget: str = WIDE_BUDGET) -> Setup:
    """The issue's case: a 128x128-image CNN at batch 64 on a 512 MiB device; the fix is batch 32 (with
    gradient accumulation to keep the effective batch)."""
    torch.manual_seed(0)
    x = torch.rand(batch_size, 3, 128, 128)
    y = torch.randint(0, 10, (batch_size,))
    return Setup(model=WideImageCNN(), train_data=(x, y), loss_fn=nn.CrossEntropyLoss(), batch_size=batch_size,
                 optimizer=lambda params: torch.optim.Adam(params, lr=1e-3), memory_budget=budget)


CASES = [
    Case("cnn-large-images-over-memory-budget", lambda: large_images(IMAGE_BUDGET), ("RUN004",),
         twin=lambda: large_images(ROOMY_BUDGET), location="model.features", select=("RUN004",)),
    Case("cnn-128px-batch-64-over-512MiB", lambda: wide_images(64), ("RUN004",),
         twin=lambda: wide_images(32), location="model.features", select=("RUN004",)),
]
