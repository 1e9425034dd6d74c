"""Attention over the wrong axis: an ``nn.MultiheadAttention`` (or a Transformer layer) built with
``batch_first=False`` reads its input as (sequence, batch, embedding). Fed (batch, sequence, embedding), it
attends across the samples of the batch. Nothing on the hot path: when training ends, if a trained root holds
such an attention, a copy replays the last training call once (eval mode, no gradients, RNG restored) with
hooks that read the attention's query shape; when its axis 0 has the samples' count (the first training
loss's targets) and axis 1 does not, sample 0 is replaced by sample 1 and the other samples' outputs are
compared (SHP002's mechanism, ``checks/shapes.py``). Each root is replayed with its first training call (and that
call's loss target), recorded by ``loss_inputs.py``.""" 
from __future__ import annotations

import copy
from typing import Any

import torch
from torch import nn

from nndoctor.probes.watchers.base import Watcher
from nndoctor.probes.wrappers import named_modules

TOLERANCE = 1e-4  # relative change of another sample's output that counts as moved (float rounding ~1e-7)


def _seq_first_attention(root: nn.Module) -> list[tuple[str, nn.Module]]:
    return [(path, m) for path, m in named_modules(root)
            if isinstance(m, nn.MultiheadAttention) and not m.batch_first]


COPY_LIMIT = 2 ** 31  # bytes of parameters and buffers: a larger model is not copied for a replay


def _copy(module: nn.Module) -> nn.Module | None:
    size = sum(t.numel() * t.element_size() for t in [*module.parameters(), *module.buffers()])
    return copy.deepcopy(module).eval() if size <= COPY_LIMIT else None


def _plain(module: nn.Module) -> nn.Module:
    while type(module).__name__ == "OptimizedModule" or isinstance(module, (nn.DataParallel, nn.parallel.DistributedDataParallel)):
        module = getattr(module, "_orig_mod", None) or module.module
    return module


class SequencesWatcher(Watcher):
    name = "attention-axes"

    def __init__(self, run) -> None:
        super().__init__(run)
        self.checked = False
        self.mixing: dict[str, Any] | None = None  # the measurement, when attention mixed samples
        self.leak: dict[str, Any] | None = None  # a next-token model's past predictions moved by a future token

    def on_run_end(self) -> None:
        if self.checked:
            return
        self.checked = True
        # each root's first training call with its loss's target (loss_inputs.py records them)
        for target, (root, inputs, kwargs) in list(getattr(self.run, "first_losses", {}).values()):
            try:
                if self.mixing is None and _seq_first_attention(root):
                    self.mixing = self._replay(_plain(root), inputs, kwargs, target)
            except Exception:  # an unusual model: no reading, never an error of the user's run
                self.mixing = None
            try:
                if self.leak is None:
                    self.leak = self._future_leak(target, root, inputs, kwargs)
            except Exception:
                self.leak = None
            finally:
                self.run.replaying = False

    def _future_leak(self, target, root, inputs, kwargs) -> dict[str, Any] | None:
        """A next-token model (the first loss's targets are its input tokens shifted by one) whose prediction at
        position t changes when only token t+1 changes sees the future: no causal mask."""
        tokens = next((t for t in inputs if isinstance(t, torch.Tensor) and not t.is_floating_point() and t.ndim == 2), None)
        if tokens is None or tokens.shape[1] < 4 or target.numel() != tokens.numel():
            return None
        t2 = target.reshape(tokens.shape)
        if float((t2[:, :-1] == tokens[:, 1:]).float().mean()) < 0.9:
            return None  # not next-token prediction
        twin = _copy(_plain(root))
        if twin is None:
            return None
        t = tokens.shape[1] // 2
        changed = tokens.clone()
        changed[:, t + 1] = (tokens[:, t + 1] + 1) % max(int(tokens.max()) + 1, 2)
        self.run.replaying = True
        with torch.random.fork_rng(devices=[]), torch.no_grad():
            base = twin(*inputs, **kwargs)
            moved = twin(*(changed if x is tokens else x for x in inputs), **kwargs)
        if not isinstance(base, torch.Tensor) or base.ndim < 3 or base.shape[:2] != tokens.shape:
            return None
        past = (moved[:, : t + 1] - base[:, : t + 1]).abs().float().amax()
        scale = float(base.abs().float().max()) or 1.0
        change = float(past) / scale
        if change <= TOLERANCE:
            return None
        return {"position": t, "changed_token": t + 1, "max_relative_change": round(change, 4),
                "sequence_length": int(tokens.shape[1])}

    def _replay(self, root: nn.Module, inputs: tuple, kwargs: dict, target: torch.Tensor) -> dict[str, Any] | None:
        x = next((t for t in inputs if isinstance(t, torch.Tensor)), None)
        if target.ndim < 1 or x is None or x.ndim < 2:
            return None
        n = target.shape[0]
        if x.shape[0] != n or n < 3:  # samples on axis 0 of the input; the attention's query shape decides below
            return None  # (an input whose feature count equals the batch size, (64, 64) digits, is still judged)
        twin = _copy(root)
        if twin is None:
            return None
        attention = _seq_first_attention(twin)
        queries: dict[str, tuple] = {}

        def query_shape(path: str):
            def hook(module: nn.Module, args: tuple, kw: dict) -> None:
                queries.setdefault(path, tuple((args[0] if args else kw["query"]).shape))
            return hook

        hooks = [m.register_forward_pre_hook(query_shape(path), with_kwargs=True) for path, m in attention]
        self.run.replaying = True
        try:
            with torch.random.fork_rng(devices=[]), torch.no_grad():
                base = twin(*inputs, **kwargs)
                path = next((p for p, _ in attention if p in queries and queries[p][0] == n and queries[p][1] != n), None)
                if path is None or not isinstance(base, torch.Tensor) or base.ndim < 1 or base.shape[0] != n:
                    return None
                swapped = x.clone()
                swapped[0] = x[1]
                moved_out = twin(*(swapped if t is x else t for t in inputs), **kwargs)
        finally:
            self.run.replaying = False
            for h in hooks:
                h.remove()
        delta = (moved_out - base).abs().float().reshape(n, -1)[2:].amax(1)
        scale = float(base.abs().float().max()) or 1.0
        others = int((delta / scale > TOLERANCE).sum())
        if not others:
            return None
        return {"attention": path, "query_shape": list(queries[path]), "batch_size": n, "other_samples_moved": others,
                "max_relative_change": round(float(delta.max()) / scale, 4)}

    def describe(self) -> str:
        return "attention layers read (batch, sequence) on the axes they expect (batch_first)"
