"""Train/eval modes: which training steps ran with dropout/batch-norm in eval mode (MOD001), which
forwards without gradients (evaluation) ran with them in train mode (MOD002)."""
from __future__ import annotations

from typing import Any

from torch import nn

from nndoctor.probes.watchers.base import DONE, Watcher

MODE_DEPENDENT = (nn.modules.dropout._DropoutNd, nn.modules.batchnorm._BatchNorm)


def _active(m: nn.Module) -> bool:
    """A module whose train/eval mode changes its output (dropout with p > 0, any batch-norm)."""
    return not isinstance(m, nn.modules.dropout._DropoutNd) or getattr(m, "p", 0) > 0


class ModesWatcher(Watcher):
    name = "train-eval-modes"

    def __init__(self, run) -> None:
        super().__init__(run)
        self._mode_dependent: dict[int, list] = {}  # root id -> [(path, module, its parent)]
        self.eval_training_steps: dict[str, int] = {}  # eval-mode module path -> steps trained so
        self.root_eval_steps = 0
        self.train_mode_evals: dict[str, int] = {}
        self.train_mode_eval_root: dict[str, int] = {}  # module path -> id of the root it was called in
        self.nograd_steps: dict[int, int] = {}  # root id -> optimizer steps preceded by such a forward
        self._nograd_since_step: set[int] = set()  # roots run without gradients, in train mode, since the step
        self._last_eval_names: list[str] | None = None  # of the last training forward
        self._idle = False  # the given model has no dropout or batch-norm: no event needed

    def _dependent(self, module: nn.Module) -> list:
        found = self._mode_dependent.get(id(module))
        if found is None:
            modules = self.run.root(module).modules
            # a parameter-free dropout matters when its parent trains
            found = self._mode_dependent[id(module)] = [
                (name, m, modules.get(name.rpartition(".")[0], module)) for name, m in modules.items()
                if isinstance(m, MODE_DEPENDENT) and _active(m)]
        return found

    def on_forward(self, module: nn.Module, inputs: tuple, kwargs: dict, training_step: bool) -> Any:
        dependent = self._dependent(module)
        if not dependent and module is self.run.model:  # the one model watched has no mode to get wrong
            self._idle = True
            return DONE
        if training_step:
            if not self.run.trains:
                return  # a frozen network (a teacher, a feature loss): its mode is its own business
            # eval-mode dropout/batch-norm that trains: its own parameters, or its parent's, get gradients
            self._last_eval_names = [name for name, m, parent in dependent if not m.training
                                     and any(p.requires_grad for p in parent.parameters())]
        elif module.training and dependent:
            in_train = [(name, m) for name, m, _ in dependent if m.training]
            # batch-norm with momentum None accumulates exact statistics: a recalibration (swa_utils.update_bn)
            if any(isinstance(m, nn.modules.batchnorm._BatchNorm) and m.momentum is None for _, m in in_train):
                return
            if in_train:
                name = in_train[0][0]
                self.train_mode_evals[name] = self.train_mode_evals.get(name, 0) + 1
                self.train_mode_eval_root[name] = id(module)
                self._nograd_since_step.add(id(module))

    def on_before_optimizer_step(self, optimizer) -> Any:
        if self._idle:
            return DONE
        for root in self._nograd_since_step:
            self.nograd_steps[root] = self.nograd_steps.get(root, 0) + 1
        self._nograd_since_step.clear()
        if self._last_eval_names:
            self.root_eval_steps += 1
            for name in self._last_eval_names:
                self.eval_training_steps[name] = self.eval_training_steps.get(name, 0) + 1

    def describe(self) -> str:
        n = sum(len(v) for v in self._mode_dependent.values())
        return f"modes of {n} dropout/batch-norm layers in training and evaluation forwards"
