"""Copies of every optimizer: each torch.optim class, as an instance and as a factory, is rebuilt over a
copy's parameters with its param groups, fresh state, and nothing of the user's touched."""
from __future__ import annotations

import inspect

import pytest
import torch
from torch import nn

import nndoctor
from nndoctor.sandbox import copy_model, fingerprint, fingerprint_diff, optimizer_for

OPTIMIZERS = sorted(
    (name for name, obj in vars(torch.optim).items()
     if isinstance(obj, type) and issubclass(obj, torch.optim.Optimizer) and obj is not torch.optim.Optimizer),
)


def _model() -> nn.Module:
    torch.manual_seed(0)
    # bias-free 2-D weights only: Muon takes nothing else
    return nn.Sequential(nn.Linear(4, 8, bias=False), nn.Tanh(), nn.Linear(8, 2, bias=False))


def _groups(cls: type, model: nn.Module) -> list[dict]:
    first, second = model[0].weight, model[2].weight
    if cls is torch.optim.LBFGS:  # "LBFGS doesn't support per-parameter options (parameter groups)"
        return [{"params": [first, second]}]
    return [{"params": [first]}, {"params": [second], "lr": 0.0123}]


def _kwargs(cls: type) -> dict:
    return {"lr": 0.05} if "lr" in inspect.signature(cls.__init__).parameters else {}


def _check_copy(opt: torch.optim.Optimizer, cls: type, clone: nn.Module, n_groups: int) -> None:
    assert type(opt) is cls
    assert len(opt.param_groups) == n_groups
    own = {id(p) for p in clone.parameters()}
    assert all(id(p) in own for g in opt.param_groups for p in g["params"])
    # experiments start fresh (Adagrad fills its accumulators in __init__, at step 0)
    assert all(float(st.get("step", 0)) == 0 for st in opt.state.values())
    if n_groups == 2:
        assert opt.param_groups[1]["lr"] == pytest.approx(0.0123)
        assert opt.param_groups[0]["lr"] == pytest.approx(opt.defaults["lr"])


def _step(opt: torch.optim.Optimizer, clone: nn.Module, cls: type) -> None:
    if cls is torch.optim.SparseAdam:
        return  # SparseAdam steps only on sparse gradients, which a dense Linear never produces
    x = torch.randn(5, 4)

    def closure():
        opt.zero_grad()
        loss = clone(x).pow(2).mean()
        loss.backward()
        return loss

    opt.step(closure)


@pytest.mark.parametrize("name", OPTIMIZERS)
def test_instance_is_rebuilt_over_the_copy(name):
    cls = getattr(torch.optim, name)
    user = _model()
    user_opt = cls(_groups(cls, user), **_kwargs(cls))
    if cls is not torch.optim.SparseAdam:  # give the user's optimizer state that must not be copied
        _step(user_opt, user, cls)
    before = fingerprint(user, user_opt)
    clone = copy_model(user)
    opt = optimizer_for(user_opt, user, clone)
    _check_copy(opt, cls, clone, len(user_opt.param_groups))
    _step(opt, clone, cls)
    assert fingerprint_diff(before, fingerprint(user, user_opt)) == []


@pytest.mark.parametrize("name", OPTIMIZERS)
def test_factory_is_called_over_the_copy(name):
    cls = getattr(torch.optim, name)
    user = _model()
    clone = copy_model(user)

    def factory(params):
        params = list(params)
        if cls is torch.optim.LBFGS:
            return cls(params, **_kwargs(cls))
        return cls([{"params": params[:1]}, {"params": params[1:], "lr": 0.0123}], **_kwargs(cls))

    opt = optimizer_for(factory, user, clone)
    _check_copy(opt, cls, clone, 1 if cls is torch.optim.LBFGS else 2)
    _step(opt, clone, cls)


class _NamedSGD(torch.optim.SGD):
    """A user subclass whose __init__ takes a required argument that defaults do not hold."""

    def __init__(self, params, tag, lr=0.1):
        self.tag = tag
        super().__init__(params, lr=lr)


def test_subclass_that_does_not_fit_is_deep_copied_and_remapped():
    user = _model()
    user_opt = _NamedSGD(_groups(torch.optim.SGD, user), "mine", lr=0.05)
    user_opt.state[user[0].weight]["marker"] = torch.ones(1)
    clone = copy_model(user)
    opt = optimizer_for(user_opt, user, clone)
    assert isinstance(opt, _NamedSGD) and opt.tag == "mine"
    _check_copy(opt, _NamedSGD, clone, 2)
    assert user_opt.state[user[0].weight]["marker"].item() == 1.0  # the user's state kept
    _step(opt, clone, _NamedSGD)


def test_check_with_an_adamw_instance_runs():
    torch.manual_seed(0)
    x = torch.randn(64, 8)
    y = (x[:, 0] > 0).long()
    model = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 2))
    setup = nndoctor.Setup(
        model=model,
        train_data=torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=16),
        loss_fn=nn.CrossEntropyLoss(),
        optimizer=torch.optim.AdamW(model.parameters(), lr=1e-3),
    )
    report = nndoctor.check(setup, select="RUN")
    assert "RUN005" not in {f.code for f in report.findings}, [f.message for f in report.findings]
