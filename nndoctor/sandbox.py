"""Copies, never the user's objects: model/optimizer copies, RNG save/restore, a 'nothing changed' fingerprint."""
from __future__ import annotations

import collections
import copy
import hashlib
import inspect
import random
from contextlib import contextmanager
from typing import Any, Callable, Iterator

import numpy as np
import torch
from torch import nn


@contextmanager
def preserved_rng() -> Iterator[None]:
    """Restore Python's, numpy's and torch's (CPU and initialised CUDA) RNG states on exit."""
    py_state = random.getstate()
    np_state = np.random.get_state()
    torch_state = torch.get_rng_state()
    cuda_states = torch.cuda.get_rng_state_all() if torch.cuda.is_available() and torch.cuda.is_initialized() else None
    try:
        yield
    finally:
        random.setstate(py_state)
        np.random.set_state(np_state)
        torch.set_rng_state(torch_state)
        if cuda_states is not None:
            torch.cuda.set_rng_state_all(cuda_states)


def seed_all(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def copy_model(model: nn.Module) -> nn.Module:
    """A deep copy with no gradients attached, in the user's train/eval state."""
    clone = copy.deepcopy(model)
    for p in clone.parameters():
        p.grad = None
    return clone


def _tensor_digest(t: torch.Tensor | None) -> str:
    if t is None:
        return "none"
    if isinstance(t, nn.parameter.UninitializedTensorMixin):  # lazy modules before their first call
        return "uninitialized"
    if t.device.type == "meta":
        return f"meta{tuple(t.shape)}"
    data = t.detach().cpu().contiguous().reshape(-1)
    raw = data.view(torch.uint8).numpy().tobytes() if data.numel() else b""
    return f"{hashlib.sha1(raw).hexdigest()}{tuple(t.shape)}{t.dtype}"


def fingerprint(model: nn.Module, optimizer: torch.optim.Optimizer | None = None) -> dict[str, Any]:
    """Everything about the user's objects that nndoctor promises not to change."""
    fp: dict[str, Any] = {}
    for name, p in model.named_parameters(remove_duplicate=False):
        fp[f"param:{name}"] = (_tensor_digest(p), p.requires_grad, _tensor_digest(p.grad))
    for name, b in model.named_buffers(remove_duplicate=False):
        fp[f"buffer:{name}"] = _tensor_digest(b)
    for name, m in model.named_modules(remove_duplicate=False):
        fp[f"training:{name}"] = m.training
    if optimizer is not None:
        for i, group in enumerate(optimizer.param_groups):
            fp[f"opt.group{i}"] = repr({k: v for k, v in group.items() if k != "params"})
            fp[f"opt.group{i}.params"] = [id(p) for p in group["params"]]
        for i, (param, state) in enumerate(optimizer.state.items()):
            fp[f"opt.state{i}"] = (id(param), {k: _tensor_digest(v) if isinstance(v, torch.Tensor) else repr(v)
                                               for k, v in state.items()})
    return fp


def rng_fingerprint() -> tuple[Any, ...]:
    return (
        repr(random.getstate()),
        hashlib.sha1(np.random.get_state()[1].tobytes()).hexdigest(),
        _tensor_digest(torch.get_rng_state()),
    )


def fingerprint_diff(before: dict[str, Any], after: dict[str, Any]) -> list[str]:
    keys = set(before) | set(after)
    return sorted(k for k in keys if before.get(k) != after.get(k))


def optimizer_for(
    spec: Callable[[Any], torch.optim.Optimizer] | torch.optim.Optimizer | None,
    user_model: nn.Module,
    clone: nn.Module,
    **overrides: Any,
) -> torch.optim.Optimizer:
    """A fresh optimizer over ``clone``'s parameters, built the way the user specified.

    A factory is called with the clone's parameters; an Optimizer instance is rebuilt with the same
    class and per-group hyperparameters, its parameters mapped from the user's model to the clone.
    Parameters that belong to neither (an optimizer built for another model) are replaced by private
    copies, so that stepping never touches a user's tensor, and the clone is left as the user's
    optimizer would leave it: not updated. ``overrides`` (e.g. ``lr=1e-2``) apply to every group.
    """
    if spec is None:
        opt = torch.optim.Adam(clone.parameters(), lr=1e-3)
    elif isinstance(spec, torch.optim.Optimizer):
        opt = _rebuild(spec, _param_map(user_model, clone))
    else:
        opt = spec(clone.parameters())
        if not isinstance(opt, torch.optim.Optimizer):
            raise TypeError(f"the optimizer factory returned {type(opt).__name__}, not a torch.optim.Optimizer")
        own = {id(p) for p in clone.parameters()}
        for group in opt.param_groups:
            group["params"] = [p if id(p) in own else _private_copy(p) for p in group["params"]]
    for group in opt.param_groups:
        for key, value in overrides.items():
            if key in group:
                group[key] = value
    return opt


def _rebuild(spec: torch.optim.Optimizer, mapping: dict[int, nn.Parameter]) -> torch.optim.Optimizer:
    """``spec``'s class over the mapped parameters, group by group, with fresh state (experiments start
    from step 0). ``defaults`` may hold keys ``__init__`` does not take (torch 2.13's AdamW stores
    ``decoupled_weight_decay``), so only the keywords the signature accepts are passed; the groups keep
    every key. A subclass whose ``__init__`` still does not fit is deep-copied with its parameters
    remapped instead."""
    params: dict[int, torch.Tensor] = {}
    for group in spec.param_groups:
        for p in group["params"]:
            if id(p) not in params:
                params[id(p)] = mapping[id(p)] if id(p) in mapping else _private_copy(p)
    groups = [{**{k: v for k, v in group.items() if k != "params"},
               "params": [params[id(p)] for p in group["params"]]} for group in spec.param_groups]
    try:
        opt = type(spec)(groups, **_accepted_kwargs(type(spec), spec.defaults))
    except Exception:  # noqa: BLE001 - any constructor that does not fit gets the copy below
        opt = None
    if opt is not None and len(opt.param_groups) == len(groups):
        for built, group in zip(opt.param_groups, groups):
            built.update(group)  # the user's per-group values win over any the constructor recomputed
        return opt
    return _remapped_deepcopy(spec, params)


def _accepted_kwargs(cls: type, defaults: dict[str, Any]) -> dict[str, Any]:
    try:
        sig = inspect.signature(cls.__init__)
    except (TypeError, ValueError):
        return dict(defaults)
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in sig.parameters.values()):
        return dict(defaults)
    return {k: v for k, v in defaults.items() if k in sig.parameters and k not in ("self", "params")}


def _remapped_deepcopy(spec: torch.optim.Optimizer, params: dict[int, torch.Tensor]) -> torch.optim.Optimizer:
    """A deep copy of the optimizer that shares the mapped parameters instead of copying the user's."""
    memo: dict[int, Any] = {}
    for group in spec.param_groups:
        for p in group["params"]:
            memo[id(p)] = params[id(p)]
    memo[id(spec.state)] = collections.defaultdict(dict)
    # ^ fresh state: experiments start from step 0 and the user's moments are never copied
    # Optimizer.__getstate__ keeps only defaults, state and groups; a subclass's own attributes matter too
    opt = type(spec).__new__(type(spec))
    opt.__dict__.update(copy.deepcopy(spec.__dict__, memo))
    return opt


def _param_map(user_model: nn.Module, clone: nn.Module) -> dict[int, nn.Parameter]:
    clone_params = dict(clone.named_parameters(remove_duplicate=False))
    return {id(p): clone_params[name] for name, p in user_model.named_parameters(remove_duplicate=False)
            if name in clone_params}


def _private_copy(p: torch.Tensor) -> nn.Parameter:
    return nn.Parameter(p.detach().clone(), requires_grad=p.requires_grad)


class Snapshot:
    """The user's model and optimizer state, to put back if the user's own code changed them during a
    check (a ``step`` or loss that closes over the original model instead of its argument)."""

    def __init__(self, model: nn.Module, optimizer: torch.optim.Optimizer | None = None):
        self.model = model
        self.optimizer = optimizer
        self.tensors = {name: t.detach().clone() for name, t in _named_tensors(model) if _materialized(t)}
        self.grads = {name: None if p.grad is None else p.grad.detach().clone()
                      for name, p in model.named_parameters(remove_duplicate=False) if _materialized(p)}
        self.flags = {name: p.requires_grad for name, p in model.named_parameters(remove_duplicate=False)}
        self.training = {name: m.training for name, m in model.named_modules(remove_duplicate=False)}
        self.opt_state = copy.deepcopy(optimizer.state_dict()) if optimizer is not None else None

    @torch.no_grad()
    def restore(self) -> None:
        for name, t in _named_tensors(self.model):
            if name in self.tensors and _materialized(t) and t.shape == self.tensors[name].shape:
                t.copy_(self.tensors[name])
        for name, p in self.model.named_parameters(remove_duplicate=False):
            p.requires_grad_(self.flags.get(name, p.requires_grad))
            if not _materialized(p):
                continue
            saved = self.grads.get(name)
            p.grad = None if saved is None else saved.clone()
        for name, m in self.model.named_modules(remove_duplicate=False):
            m.training = self.training.get(name, m.training)
        if self.optimizer is not None and self.opt_state is not None:
            self.optimizer.load_state_dict(self.opt_state)


def _materialized(t: torch.Tensor) -> bool:
    return not isinstance(t, nn.parameter.UninitializedTensorMixin) and t.device.type != "meta"


def _named_tensors(model: nn.Module):
    yield from model.named_parameters(remove_duplicate=False)
    yield from model.named_buffers(remove_duplicate=False)
