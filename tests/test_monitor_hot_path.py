"""The Monitor's hot path (issue 15): one stacked host read per optimizer step, roots found with one global
pre-hook when a model is given (the post-hook only for ``Monitor()``), and the memoised user call site that
the step-order watcher asks on every backward equal to the full frame walk."""
from __future__ import annotations

import sys

import torch
from torch import nn
from torch.nn.modules import module as module_hooks

import nndoctor
from nndoctor.probes.errors import user_call_site
from nndoctor.probes.watchers import base
from nndoctor.probes.watchers.base import outside_nndoctor, user_site


class Wrapper(nn.Module):
    """Calls the model one level down, as DDP does."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x):
        return self.model(x)


def _train(call, opt, steps: int, *monitor_args):
    x, y = torch.randn(16, 4), torch.randint(0, 2, (16,))
    with nndoctor.Monitor(*monitor_args) as mon:
        for _ in range(steps):
            opt.zero_grad()
            nn.functional.cross_entropy(call(x), y).backward()
            opt.step()
    return mon


def test_one_stacked_read_per_optimizer_step(monkeypatch):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Dropout(0.1), nn.Linear(8, 2))
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    reads, original = [], base.read_once
    monkeypatch.setattr(base, "read_once", lambda tensors: reads.append(len(tensors)) or original(tensors))
    x, y = torch.randn(16, 4), torch.randint(0, 2, (16,))
    with nndoctor.Monitor(model, opt):
        for _ in range(12):
            opt.zero_grad()
            nn.functional.cross_entropy(model(x), y).backward()
            opt.step()
        during = list(reads)
    assert len(during) == 12 and all(n >= 2 for n in during)  # the loss and the gradient norms, every step


def test_a_given_model_is_the_root_wherever_it_is_called_without_a_post_hook():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))
    wrapper = Wrapper(model)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    before = len(module_hooks._global_forward_hooks)
    x, y = torch.randn(16, 4), torch.randint(0, 2, (16,))
    with nndoctor.Monitor(model, opt) as mon:
        during = len(module_hooks._global_forward_hooks)  # no post-hook on every module call
        for _ in range(3):
            opt.zero_grad()
            nn.functional.cross_entropy(wrapper(x), y).backward()
            opt.step()
    assert during == before
    assert set(mon.run.roots) == {id(model)} and mon.run.last_train_call[0] is model and mon.run.roots[id(model)].trained


def test_without_a_model_the_outermost_module_is_the_root():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))
    wrapper = Wrapper(model)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    mon = _train(wrapper, opt, 3)
    assert set(mon.run.roots) == {id(wrapper)} and mon.run.last_train_call[0] is wrapper


def test_the_memoised_call_site_is_the_frame_walks():
    def site():  # as a watcher asks: from inside a callee, the caller's line
        return user_site(sys._getframe(1)), user_call_site(outside_nndoctor(sys._getframe(1)))[0]

    line = sys._getframe().f_lineno
    first, walked = site()
    again, _ = site()
    assert first == walked and first.endswith(f"test_monitor_hot_path.py:{line + 1}")
    assert again.endswith(f":{line + 2}") and site() == site()  # memoised per line, not per function


class _Counting(base.Watcher):
    """Done with the forward after two calls; keeps every optimizer step."""

    name = "counting"

    def __init__(self, run) -> None:
        super().__init__(run)
        self.forwards = self.steps = 0

    def on_forward(self, module, inputs, kwargs, training_step):
        self.forwards += 1
        return base.DONE if self.forwards == 2 else None

    def on_after_optimizer_step(self, optimizer):
        self.steps += 1


def test_an_event_method_that_returns_done_is_not_called_again(monkeypatch):
    from nndoctor.live import monitor as hub
    from nndoctor.live.registry import LiveCheck

    monkeypatch.setattr(hub, "LIVE_CHECKS", [LiveCheck(_Counting, lambda w: [])])
    model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))
    mon = _train(model, torch.optim.SGD(model.parameters(), lr=0.1), 5, model)
    counting = mon.watchers[0]
    assert (counting.forwards, counting.steps) == (2, 5)
    assert mon._to["on_forward"] == [] and len(mon._to["on_after_optimizer_step"]) == 1


def _quiet(mon) -> set[str]:
    """The watchers no longer called on a training forward or at an optimizer step."""
    called = {type(f.__self__).__name__ for e in ("on_forward", "on_before_optimizer_step",
                                                  "on_after_optimizer_step") for f in mon._to[e]}
    return {type(w).__name__ for w in mon.watchers} - called


def test_watchers_with_nothing_to_watch_go_quiet_and_come_back_for_a_model_that_needs_them():
    torch.manual_seed(0)
    plain = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))  # CPU, one process, no dropout
    opt = torch.optim.SGD(plain.parameters(), lr=0.1)
    mon = _train(plain, opt, 4, plain, opt)
    assert {"GpuUsageWatcher", "RanksWatcher", "ModesWatcher", "CompiledWatcher", "WeightDecayWatcher"} <= _quiet(mon)
    # the given optimizer was seen changing its parameters: nothing more to read for it
    assert "OptimizerWatcher" not in {type(w).__name__ for w in mon._readers}
    assert mon.run.steps_of == {id(opt): 4}
    dropout = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Dropout(0.5), nn.Linear(8, 2))
    opt = torch.optim.SGD(dropout.parameters(), lr=0.1)
    assert "ModesWatcher" not in _quiet(_train(dropout, opt, 3, dropout, opt))


def test_a_quiet_modes_watcher_still_finds_dropout_trained_in_eval_mode():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Dropout(0.5), nn.Linear(8, 2)).eval()  # the bug
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    mon = _train(model, opt, 6, model, opt)
    assert "MOD001" in {f.code for f in mon.report().findings}
    model.train()  # the fix
    mon = _train(model, opt, 6, model, opt)
    assert "MOD001" not in {f.code for f in mon.report().findings}
