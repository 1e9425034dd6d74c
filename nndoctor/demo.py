"""`nndoctor demo`: the playbook on scikit-learn's digits (ships with scikit-learn, no download),
with two bugs planted the way people really write them."""
from __future__ import annotations

import sys

import torch
from torch import nn

from nndoctor.spec import Setup

DEMO_FILE_HINT = """\
To check your own model, write a file with a setup() function:

    # my_setup.py
    import torch, nndoctor
    def setup():
        return nndoctor.Setup(model=net, train_data=loader, val_data=val_loader,
                              loss_fn=torch.nn.CrossEntropyLoss(),
                              optimizer=lambda p: torch.optim.Adam(p, lr=1e-3))

and run `nndoctor check my_setup.py` (or `nndoctor run train.py` on an unmodified script).
Every code is explained by `nndoctor codes CODE`.
"""


def digits_tensors(scale_to_255: bool = False, seed: int = 0):
    """Digits images as flat float32 features in [0, 1] (or raw 0-255 pixels), split 80/20."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    x = torch.tensor(digits.data, dtype=torch.float32) / 16.0  # pixel values are 0..16
    if scale_to_255:
        x = (x * 255).round()
    y = torch.tensor(digits.target, dtype=torch.long)
    g = torch.Generator().manual_seed(seed)
    perm = torch.randperm(len(y), generator=g)
    cut = int(0.8 * len(y))
    tr, va = perm[:cut], perm[cut:]
    return (x[tr], y[tr]), (x[va], y[va])


def buggy_setup() -> Setup:
    """An MLP on digits with two planted bugs: raw 0-255 pixels, and a softmax before CrossEntropyLoss."""
    torch.manual_seed(0)
    train, val = digits_tensors(scale_to_255=True)  # bug 1: pixels never scaled to [0, 1]
    model = nn.Sequential(
        nn.Linear(64, 128), nn.ReLU(),
        nn.Linear(128, 10),
        nn.Softmax(dim=1),  # bug 2: CrossEntropyLoss applies log-softmax itself
    )
    return Setup(model=model, train_data=train, val_data=val, loss_fn=nn.CrossEntropyLoss(),
                 optimizer=lambda p: torch.optim.Adam(p, lr=1e-3), batch_size=64)


def clean_setup() -> Setup:
    """The same example with both bugs fixed."""
    torch.manual_seed(0)
    train, val = digits_tensors()
    model = nn.Sequential(nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 10))
    return Setup(model=model, train_data=train, val_data=val, loss_fn=nn.CrossEntropyLoss(),
                 optimizer=lambda p: torch.optim.Adam(p, lr=1e-3), batch_size=64)


def run_demo(html_path: str | None = None, json_path: str | None = None) -> int:
    from nndoctor.report.console import emit_report, progress_display
    from nndoctor.playbook import check

    print("nndoctor demo: an MLP on scikit-learn's digits (1797 8x8 images, 10 classes) with two planted bugs:")
    print("  1. the pixels are raw 0-255 values, never scaled")
    print("  2. the model ends in nn.Softmax, and its output goes to nn.CrossEntropyLoss")
    print("nndoctor runs its playbook on copies of the model (your objects are never changed)...\n")
    sys.stdout.flush()
    with progress_display() as progress:
        report = check(buggy_setup(), budget=60, progress=progress)
    emit_report(report, json_path, html_path, title="nndoctor demo")
    print()
    print(DEMO_FILE_HINT)
    # The planted bugs are the point of the demo: finding them is success, so the exit status is 0
    # (unlike `check`, where an error finding exits 1).
    return 0
