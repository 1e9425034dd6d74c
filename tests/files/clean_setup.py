"""A correct small model: an MLP on scikit-learn's digits."""
import torch
from torch import nn
from sklearn.datasets import load_digits

import nndoctor


def setup():
    torch.manual_seed(0)
    d = load_digits()
    x = torch.tensor(d.data, dtype=torch.float32) / 16.0
    y = torch.tensor(d.target)
    model = nn.Sequential(nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 10))
    return nndoctor.Setup(model=model, train_data=(x[:1400], y[:1400]), val_data=(x[1400:], y[1400:]),
                          loss_fn=nn.CrossEntropyLoss(), optimizer=lambda p: torch.optim.Adam(p, lr=1e-3))


def wrong_in_features():
    s = setup()
    s.model[2] = nn.Linear(64, 10)  # the hidden layer has 128 units
    return s


def needs_args(x):
    return setup()


def not_a_setup():
    return 42


def raises():
    raise RuntimeError("cannot build my model")


def invalid_setup():
    return nndoctor.Setup(model="not a model", train_data=[], loss_fn=nn.MSELoss())
