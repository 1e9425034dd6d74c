"""Setup and KnownResult validate on construction with clear messages; every data form works."""
from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, TensorDataset

import nndoctor
from nndoctor import KnownResult, Setup, SetupError
from nndoctor.data import DataSource
from nndoctor.spec import parse_size

from helpers import run_checked

X, Y = torch.randn(40, 5), torch.randint(0, 3, (40,))


def model():
    return nn.Sequential(nn.Linear(5, 8), nn.ReLU(), nn.Linear(8, 3))


@pytest.mark.parametrize("kwargs,words", [
    ({"model": "net"}, "nn.Module"),
    ({"train_data": None}, "required"),
    ({"train_data": "data.csv"}, "expected a DataLoader"),
    ({"train_data": X}, "single tensor"),
    ({"train_data": (X, Y[:10])}, "different lengths"),
    ({"loss_fn": None}, "loss_fn"),
    ({"loss_fn": "mse"}, "callable"),
    ({"optimizer": 0.01}, "factory"),
    ({"batch_size": 0}, "positive integer"),
    ({"task": "segmentation"}, "task must be one of"),
    ({"known_results": [{"metric": "accuracy"}]}, "KnownResult"),
    ({"memory_budget": "lots"}, "not understood"),
    ({"reference_model": 3}, "reference_model"),
])
def test_invalid_setup_is_rejected_with_a_clear_message(kwargs, words):
    base = dict(model=model(), train_data=(X, Y), loss_fn=nn.CrossEntropyLoss())
    with pytest.raises(SetupError, match=words):
        Setup(**{**base, **kwargs})


def test_known_result_validates_source_and_value():
    with pytest.raises(SetupError, match="official-similar"):
        KnownResult(metric="accuracy", value=0.9, source="blog")
    with pytest.raises(SetupError, match="number"):
        KnownResult(metric="accuracy", value="high", source="paper")
    assert KnownResult("accuracy", 0.9, "official-similar").trust_rank < KnownResult("accuracy", 0.9, "similar-model").trust_rank
    assert KnownResult("val_loss", 0.3, "paper").higher_is_better is False


def test_parse_size():
    assert parse_size("2GiB") == 2 * 1024**3
    assert parse_size("512MB") == 512 * 1000**2
    assert parse_size(1000) == 1000


class PairDataset(Dataset):
    def __len__(self):
        return 40

    def __getitem__(self, i):
        return X[i], Y[i]


def _gen():
    for i in range(0, 40, 10):
        yield X[i:i + 10], Y[i:i + 10]


@pytest.mark.parametrize("form", ["tensors", "dataloader", "dataset", "list", "generator"])
def test_every_data_form_runs_one_step(form):
    data = {
        "tensors": (X, Y),
        "dataloader": DataLoader(TensorDataset(X, Y), batch_size=10),
        "dataset": PairDataset(),
        "list": [(X[:20], Y[:20]), (X[20:], Y[20:])],
        "generator": _gen(),
    }[form]
    report = run_checked(Setup(model=model(), train_data=data, loss_fn=nn.CrossEntropyLoss()), select=["RUN"])
    assert [c.status for c in report.checks if c.name == "one-training-step"] == ["passed"]


def test_generator_is_cached_so_it_can_be_read_twice():
    source = DataSource(_gen(), name="train")
    assert len(list(source.batches())) == 4
    assert len(list(source.batches())) == 4


class TupleModel(nn.Module):
    def __init__(self):
        super().__init__()
        self.a, self.b = nn.Linear(5, 3), nn.Linear(5, 3)

    def forward(self, left, right):
        return self.a(left) + self.b(right)


def test_tuple_and_dict_inputs():
    tup = Setup(model=TupleModel(), train_data=((X, X), Y), loss_fn=nn.CrossEntropyLoss())
    assert "RUN" not in "".join(run_checked(tup, select=["RUN"]).codes())
    dict_batches = [({"left": X, "right": X}, Y)]
    dct = Setup(model=TupleModel(), train_data=dict_batches, loss_fn=nn.CrossEntropyLoss())
    assert not run_checked(dct, select=["RUN"]).codes()


def test_custom_step_for_models_that_compute_their_own_loss():
    net = model()
    batches = [{"x": X, "labels": Y}]
    setup = Setup(model=net, train_data=batches,
                  step=lambda m, b: nn.functional.cross_entropy(m(b["x"]), b["labels"]))
    report = run_checked(setup, select=["RUN"])
    assert [c.status for c in report.checks if c.name == "one-training-step"] == ["passed"]


def test_user_objects_unchanged_with_an_optimizer_instance_and_eval_flags():
    net = model()
    net[1].eval()  # a mixed train/eval state must come back exactly
    opt = torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9)
    net(X).sum().backward()
    opt.step()  # optimizer state (momentum buffers) and gradients exist before the check
    run_checked(Setup(model=net, train_data=(X, Y), loss_fn=nn.CrossEntropyLoss(), optimizer=opt))


def test_state_is_restored_when_user_code_touches_the_original_model():
    net = model()
    opt = torch.optim.SGD(net.parameters(), lr=0.5)

    def step(m, batch):  # a common slip: closes over the original `net`, not its argument `m`
        x, y = batch
        return nn.functional.cross_entropy(net(x), y)

    before = [p.detach().clone() for p in net.parameters()]
    report = nndoctor.check(Setup(model=net, train_data=(X, Y), step=step,
                                  optimizer=lambda p: torch.optim.SGD(list(net.parameters()), lr=0.5)),
                            select=["RUN"])
    assert report.meta["user_state_changed"] == []
    assert all(torch.equal(a, b) for a, b in zip(before, net.parameters()))
    assert all(p.grad is None for p in net.parameters())
    del opt
