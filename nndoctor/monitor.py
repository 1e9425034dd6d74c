"""Monitor: the always-on, low-overhead watcher of a user's own training loop.

    with nndoctor.Monitor(model, optimizer) as mon:
        ...the user's loop...
    report = mon.report()

It is the engine of ``nndoctor run`` (``Monitor()`` with no model watches every module and optimizer
through PyTorch's global hooks) and of the framework callbacks. Hot-path rules: no host sync per
module; one host transfer per optimizer step (loss, gradient norm and the stale-gradient flag
together). Expensive localisation (which op made the first NaN) replays the failing forward on a
copy, only when the cheap guard trips.
"""
from __future__ import annotations

import copy
import math
import statistics
import sys
import time
import weakref
from typing import Any

import torch
from torch import nn
from torch.nn.modules import module as module_hooks
from torch.optim import optimizer as optimizer_hooks

from nndoctor.events import MonitorEvents
from nndoctor.checks import distributed
from nndoctor.findings import CheckRecord, Finding, Report
from nndoctor.probes import live_curve
from nndoctor.probes.rank_exchange import RankExchange
from nndoctor.probes.rank_facts import RankFacts, world
from nndoctor.probes.wrappers import named_modules, named_parameters
from nndoctor.probes.errors import classify, user_call_site
from nndoctor.probes.loss_sign import negated_loss

MODE_DEPENDENT = (nn.modules.dropout._DropoutNd, nn.modules.batchnorm._BatchNorm)


class StopTraining(BaseException):
    """Raised from an optimizer step hook to stop the script after ``max_steps`` (BaseException so that
    the user's ``except Exception`` does not swallow it)."""


class _Watched:
    """What the Monitor knows about one root module (a model)."""

    def __init__(self, module: nn.Module):
        self.ref = weakref.ref(module)
        modules = dict(named_modules(module))
        # (path, module, its parent): a parameter-free dropout matters when its parent trains
        self.mode_dependent = [(name, m, modules.get(name.rpartition(".")[0], module)) for name, m in modules.items()
                               if isinstance(m, MODE_DEPENDENT) and _active(m)]
        self.names = {id(p): name for name, p in named_parameters(module)}
        self.trained = False  # seen in a forward with gradients enabled


def _active(m: nn.Module) -> bool:
    """A module whose train/eval mode changes its output (dropout with p > 0, any batch-norm)."""
    return not isinstance(m, nn.modules.dropout._DropoutNd) or getattr(m, "p", 0) > 0


class Monitor(MonitorEvents):
    def __init__(self, model: nn.Module | None = None, optimizer: torch.optim.Optimizer | None = None, *,
                 max_steps: int | None = None):
        self.model = model
        self.optimizer = optimizer
        self.max_steps = max_steps
        self.steps = 0
        self.losses: list[float] = []
        self.grad_norms: list[float] = []
        self.findings: list[Finding] = []
        self._handles: list[Any] = []
        self._depth = 0
        self._roots: dict[int, _Watched] = {}
        self._optimizers: dict[int, dict[str, Any]] = {}
        self._pending_loss: torch.Tensor | None = None
        self._pending_negated: str | None = None  # the backward's scalar is minus this non-negative loss
        self._negated_steps = 0
        self._loss_owners: set[int] = set()  # optimizers that stepped right after a backward of their own
        self._negated_site: str | None = None
        self._negated_name = ""
        self._stale_steps = 0
        self._eval_training_steps: dict[str, int] = {}  # eval-mode module path -> steps trained so
        self._root_eval_steps = 0
        self._train_mode_evals: dict[str, int] = {}
        self._train_mode_eval_root: dict[str, int] = {}  # module path -> id of the root it was called in
        self._nograd_since_step: set[int] = set()  # roots run without gradients, in train mode, since the step
        self._nograd_steps: dict[int, int] = {}  # root id -> optimizer steps preceded by such a forward
        self._last_train_call: tuple[nn.Module, tuple, dict] | None = None
        self._last_eval_names: list[str] = []
        self._localised = False
        self._replaying = False  # our own replay of a failing step must not be watched
        self._failing: nn.Module | None = None
        self._original_backward = None
        self._started = time.monotonic()
        self._ended = False
        self._report: Report | None = None
        self.error: BaseException | None = None
        # Distributed runs only: per-rank facts for DDP001-DDP004, carried to rank 0 at report().
        self._rank_facts = RankFacts(before_group_destroyed=self._before_group_destroyed)
        self._exchange = RankExchange()

    # ----- install / remove ----------------------------------------------------------------------
    def __enter__(self) -> "Monitor":
        self._handles.append(module_hooks.register_module_forward_pre_hook(self._pre_forward))
        self._handles.append(module_hooks.register_module_forward_hook(self._post_forward, always_call=True))
        if self.optimizer is not None:
            self._handles.append(self.optimizer.register_step_pre_hook(self._pre_step))
            self._handles.append(self.optimizer.register_step_post_hook(self._post_step))
        else:
            self._handles.append(optimizer_hooks.register_optimizer_step_pre_hook(self._pre_step))
            self._handles.append(optimizer_hooks.register_optimizer_step_post_hook(self._post_step))
        # backward() has no global hook: wrap it for the Monitor's lifetime to see the loss value.
        self._original_backward = torch.Tensor.backward
        monitor, original = self, self._original_backward

        def backward(tensor: torch.Tensor, *args: Any, **kwargs: Any) -> Any:
            if tensor.numel() == 1:
                monitor.on_backward(tensor)
            return original(tensor, *args, **kwargs)

        torch.Tensor.backward = backward  # type: ignore[method-assign]
        self._rank_facts.__enter__()
        return self

    def __exit__(self, exc_type, exc, tb) -> bool:
        self.close()
        if exc is not None and not isinstance(exc, (StopTraining, KeyboardInterrupt, SystemExit)):
            self.on_error(exc)
        self.on_run_end()
        return False

    def close(self) -> None:
        """Remove every hook and restore ``Tensor.backward``."""
        for handle in self._handles:
            handle.remove()
        self._handles.clear()
        self._rank_facts.__exit__(None, None, None)
        if self._original_backward is not None:
            torch.Tensor.backward = self._original_backward  # type: ignore[method-assign]
            self._original_backward = None

    # ----- forward ---------------------------------------------------------------------------------
    def _pre_forward(self, module: nn.Module, args: tuple) -> None:
        # With a model given, watch it wherever it is called (a DDP wrapper calls it one level down).
        if not self._replaying and (module is self.model if self.model is not None else self._depth == 0):
            self._failing = None
            self.on_forward(module, args, {}, torch.is_grad_enabled() and not torch.is_inference_mode_enabled())
        self._depth += 1

    def _post_forward(self, module: nn.Module, args: tuple, output: Any) -> None:
        self._depth = max(0, self._depth - 1)
        if output is None and self._failing is None:
            self._failing = module  # always_call: forward raised here (innermost first)

    def _watched(self, module: nn.Module) -> _Watched:
        w = self._roots.get(id(module))
        if w is None or w.ref() is not module:
            w = self._roots[id(module)] = _Watched(module)
        return w

    def on_forward(self, module: nn.Module, inputs: tuple, kwargs: dict, training_step: bool) -> None:
        if not any(True for _ in module.parameters()):
            return  # a loss module or a parameter-free helper: nothing to judge
        w = self._watched(module)
        if training_step:
            if not any(p.requires_grad for p in module.parameters()):
                return  # a frozen network (a teacher, a feature loss): its mode is its own business
            w.trained = True
            self._last_train_call = (module, inputs, kwargs)
            # eval-mode dropout/batch-norm that trains: its own parameters, or its parent's, get gradients
            self._last_eval_names = [name for name, m, parent in w.mode_dependent if not m.training
                                     and any(p.requires_grad for p in parent.parameters())]
            self._rank_facts.on_training_forward(module, inputs)
        elif module.training:
            in_train = [(name, m) for name, m, _ in w.mode_dependent if m.training]
            # batch-norm with momentum None accumulates exact statistics: a recalibration (swa_utils.update_bn)
            recalibrating = any(isinstance(m, nn.modules.batchnorm._BatchNorm) and m.momentum is None
                                for _, m in in_train)
            in_train = [] if recalibrating else [name for name, _ in in_train]
            if in_train:
                self._train_mode_evals[in_train[0]] = self._train_mode_evals.get(in_train[0], 0) + 1
                self._train_mode_eval_root[in_train[0]] = id(module)
                self._nograd_since_step.add(id(module))

    # ----- backward and step ------------------------------------------------------------------------
    def on_backward(self, loss: torch.Tensor) -> None:
        self._pending_loss = loss.detach()
        try:
            self._pending_negated = negated_loss(loss)
        except Exception:  # an unusual graph: no reading
            self._pending_negated = None
        if self._pending_negated and self._negated_site is None:  # frame 2: the caller of backward()
            self._negated_site = user_call_site(sys._getframe(2))[0] or "loss"

    def _pre_step(self, optimizer: torch.optim.Optimizer, args: Any, kwargs: Any) -> None:
        self.on_before_optimizer_step(optimizer)

    def _post_step(self, optimizer: torch.optim.Optimizer, args: Any, kwargs: Any) -> None:
        self.on_after_optimizer_step(optimizer)

    def _opt_state(self, optimizer: torch.optim.Optimizer) -> dict[str, Any]:
        state = self._optimizers.get(id(optimizer))
        if state is None:
            params = [p for g in optimizer.param_groups for p in g["params"] if p.requires_grad]
            state = {"params": params, "ids": {id(p) for p in params}, "steps": 0, "armed": False, "stale": None,
                     "before": None, "changed": None,
                     "trains_model": any(isinstance(p, nn.Parameter) for p in params)}
            if params:  # the stale-gradient probe: one leaf hook on one parameter
                state["hook"] = params[0].register_hook(self._grad_hook(params[0], state))
                self._handles.append(state["hook"])
            self._optimizers[id(optimizer)] = state
        return state

    def _grad_hook(self, param: torch.Tensor, state: dict[str, Any]):
        def hook(grad: torch.Tensor) -> None:
            # Runs before the new gradient is accumulated into .grad. The first backward after a step that
            # finds the old gradient still there raises a suspicion (a device flag, read at the next step);
            # a later backward that finds .grad emptied clears it. So only a step that really uses gradients
            # carried over from before the previous step counts: not a GAN generator's backward that passes
            # through the discriminator, whose gradients are zeroed before the discriminator's own step.
            if param.grad is None:
                state["stale"] = None
            elif state["armed"]:
                state["stale"] = (param.grad != 0).any()
            elif state["stale"] is not None:
                state["stale"] = state["stale"] & (param.grad != 0).any()
            state["armed"] = False

        return hook

    def on_before_optimizer_step(self, optimizer: torch.optim.Optimizer) -> None:
        state = self._opt_state(optimizer)
        self._rank_facts.on_step()
        grads = [p.grad for p in state["params"] if p.grad is not None]
        norm = torch.linalg.vector_norm(torch.stack(torch._foreach_norm(grads))) if grads else torch.zeros(())
        had_loss = self._pending_loss is not None
        loss = self._pending_loss if had_loss else torch.tensor(float("nan"))
        stale = state["stale"] if state["stale"] is not None else torch.tensor(False)
        loss_v, norm_v, stale_v = torch.stack([loss.float().cpu().reshape(()), norm.float().cpu(),
                                               stale.float().cpu()]).tolist()  # the one host transfer
        state["stale"] = None
        self._pending_loss = None
        if self._pending_negated and state["trains_model"]:  # not an attack's ascent on its input perturbation
            self._negated_steps += 1
            self._negated_name = self._pending_negated
        self._pending_negated = None
        if had_loss:
            self.losses.append(loss_v)
            self._loss_owners.add(id(optimizer))
        self.grad_norms.append(norm_v)
        self._stale_steps += int(stale_v > 0)
        for root in self._nograd_since_step:
            self._nograd_steps[root] = self._nograd_steps.get(root, 0) + 1
        self._nograd_since_step.clear()
        if self._last_train_call is not None:
            if self._last_eval_names:
                self._root_eval_steps += 1
            for name in self._last_eval_names:
                self._eval_training_steps[name] = self._eval_training_steps.get(name, 0) + 1
        if state["steps"] == 0:  # all of them: a closure (LBFGS, Lightning) computes gradients inside step()
            state["before"] = [p.detach().clone() for p in state["params"]]
        if not ((math.isfinite(loss_v) or not had_loss) and math.isfinite(norm_v)) and not self._localised:
            self._localised = True
            self._localise_non_finite(state, loss_v)

    def on_after_optimizer_step(self, optimizer: torch.optim.Optimizer) -> None:
        state = self._opt_state(optimizer)
        if state["steps"] == 0 and state["before"] is not None:
            pairs = [(b, p) for b, p in zip(state["before"], state["params"]) if p.grad is not None]
            state["changed"] = sum(not torch.equal(b, p) for b, p in pairs)
            state["with_grad"] = len(pairs)
            state["before"] = None
        state["steps"] += 1
        state["armed"] = True
        self.steps += 1
        if self._rank_facts.after_step(self.steps):
            self._exchange.remember_store()
        if self.max_steps is not None and self.steps >= self.max_steps:
            raise StopTraining()

    def on_loss_value(self, value: float) -> None:
        self.losses.append(float(value))

    # ----- NaN localisation (only when the guard trips) -----------------------------------------------
    def _localise_non_finite(self, state: dict[str, Any], loss_v: float) -> None:
        from nndoctor.probes.nonfinite import FirstNonFinite

        call = self._last_train_call
        if call is None:
            return
        module, inputs, kwargs = call
        names = self._watched(module).names
        bad = [names.get(id(p), "?") for p in state["params"]
               if p.grad is not None and not bool(torch.isfinite(p.grad).all())]
        self._replaying = True
        try:
            replica = copy.deepcopy(module)
            with torch.no_grad(), FirstNonFinite(replica) as probe:
                replica(*inputs, **kwargs)
            births = probe.births
        except Exception:
            births = []
        finally:
            self._replaying = False
        step = self.steps + 1
        if births:
            b = births[0]
            self.findings.append(Finding(
                "NUM001", f"At step {step} the first NaN/Inf was made in the forward pass by `{b.op}` in "
                f"{b.site.describe()} (inputs {b.inputs[:2]}); replayed on a copy of the model.",
                location=b.site.location("model"), evidence={"step": step, "op": b.op, "inputs": b.inputs,
                                                             "produced": b.produced},
                suggestions=["Guard the op (clamp, an epsilon, a stable fused function such as log_softmax)."]))
        elif math.isfinite(loss_v) and bad:
            where = "model." + bad[-1].rsplit(".", 1)[0] if "." in bad[-1] else "model"
            self.findings.append(Finding(
                "NUM002", f"At step {step} the loss was finite ({loss_v:.4g}) but the gradients of "
                f"{len(bad)} parameters were NaN/Inf, first (nearest the loss) {bad[-1]}.",
                location=where, evidence={"step": step, "loss": loss_v, "non_finite_grads": bad[:20]},
                suggestions=["Look for sqrt/log/division at 0 in that module's forward; add an epsilon."]))
        elif not math.isfinite(loss_v):
            self.findings.append(Finding(
                "NUM001", f"At step {step} the loss was {loss_v}; the model's forward replays finite, so the "
                "NaN/Inf is made in the loss computation.", location="loss",
                evidence={"step": step, "loss": str(loss_v)},
                suggestions=["Use a fused loss (cross_entropy, BCEWithLogitsLoss) or add an epsilon to logs."]))

    # ----- errors and the end -----------------------------------------------------------------------
    def on_error(self, exc: BaseException) -> None:
        self.error = exc
        info = classify(exc, "forward" if self._failing is not None else "training")
        code = {"shape": "RUN001", "dtype": "RUN002", "device": "RUN003", "memory": "RUN004",
                "targets": "DAT003"}.get(info.kind, "RUN005")
        location = info.source or "script"
        if self._failing is not None:
            location = self._module_path(self._failing) or location
        self.findings.append(Finding(code, f"The training script crashed: {info.summary}"
                                     + (f" (at {info.source}: `{info.source_line}`)" if info.source else ""),
                                     location=location, evidence={"error": info.summary, "source": info.source}))

    def _module_path(self, target: nn.Module) -> str | None:
        for w in self._roots.values():
            root = w.ref()
            if root is None:
                continue
            for name, m in named_modules(root):
                if m is target:
                    return f"model.{name}".rstrip(".")
        return None

    def on_run_end(self) -> None:
        if self._ended:
            return
        self._ended = True
        self._judge_modes()
        self._judge_gradients()
        self._judge_loss_sign()
        # Several optimizers each stepping on a loss of its own play a game (GAN, actor-critic): no trend
        self.findings.extend(live_curve.judge(self.losses, self.grad_norms, trend=len(self._loss_owners) <= 1))

    def _judge_modes(self) -> None:
        if self._root_eval_steps:
            names = sorted(self._eval_training_steps)
            self.findings.append(Finding(
                "MOD001", f"{self._root_eval_steps} of {self.steps} optimizer steps ran with the model in eval "
                f"mode: dropout/batch-norm layers {', '.join('model.' + n for n in names[:5])} "
                "behave as in evaluation while training.", location="model",
                evidence={"steps_in_eval": self._root_eval_steps, "steps": self.steps, "modules": names[:20]},
                suggestions=["Call model.train() at the start of every training epoch (after validation)."]))
        # A forward without gradients before most steps is part of the training step (a GAN's fakes, pseudo-
        # labels), not an evaluation: only rarer ones (a validation pass per epoch) count.
        evals = {name: n for name, n in self._train_mode_evals.items()
                 if self._nograd_steps.get(self._train_mode_eval_root[name], 0) < 0.25 * max(self.steps, 1)}
        if evals:
            calls = sum(evals.values())
            names = sorted(evals)
            self.findings.append(Finding(
                "MOD002", f"{calls} forward passes without gradients (evaluation) ran with the model in train "
                f"mode: {', '.join('model.' + n for n in names[:5])} used training behaviour.",
                location="model", evidence={"forwards": calls, "modules": names[:20]},
                suggestions=["Call model.eval() before evaluating, and model.train() afterwards."]))

    def _judge_loss_sign(self) -> None:
        """OFB001 when most steps minimised minus a non-negative loss, confirmed by that loss (the negated
        values the Monitor recorded) rising over the run; a double flip (maximize=True) does not rise."""
        if not self._negated_steps or self._negated_steps < 0.5 * self.steps or len(self.losses) < 10:
            return
        if len(self._loss_owners) > 1:  # a game (a GAN's generator may maximise its critic's loss on purpose)
            return
        errors = [-v for v in self.losses if math.isfinite(v)]
        width = max(3, len(errors) // 10)
        first, last = statistics.median(errors[:width]), statistics.median(errors[-width:])
        if not last > first + 0.05 * max(abs(first), 1e-8):
            return
        where = self._negated_site or "loss"
        self.findings.append(Finding(
            "OFB001", f"{self._negated_steps} of {self.steps} optimizer steps minimised minus {self._negated_name} "
            f"(the scalar passed to backward() negates it): the error itself rose from {first:.4g} to {last:.4g} (medians "
            f"of the first and last {width} steps), so training climbs the loss.", location=where,
            evidence={"negated_loss": self._negated_name, "negated_steps": self._negated_steps, "steps": self.steps,
                      "error_first": first, "error_last": last},
            suggestions=[f"Minimise the loss itself: remove the minus sign in front of {self._negated_name}."]))

    def _judge_gradients(self) -> None:
        if self._stale_steps >= 2:
            self.findings.append(Finding(
                "GRD005", f"In {self._stale_steps} of {self.steps} optimizer steps the gradients of the previous "
                "step were still in .grad when backward ran: gradients are never zeroed, they accumulate.",
                location="optimizer", evidence={"stale_steps": self._stale_steps, "steps": self.steps},
                suggestions=["Call optimizer.zero_grad() once per step (before backward)."]))
        owned = set().union(*(s["ids"] for s in self._optimizers.values())) if self._optimizers else set()
        for w in self._roots.values():
            root = w.ref()
            if root is None or not w.trained or not self._optimizers:
                continue
            orphans = [name for name, p in named_parameters(root) if p.requires_grad and id(p) not in owned]
            if orphans:
                total = sum(1 for p in root.parameters() if p.requires_grad)
                self.findings.append(Finding(
                    "GRD002", f"{len(orphans)} of {total} trainable parameters of the model are in no optimizer, "
                    f"so they never change: {', '.join(orphans[:5])}.",
                    location="model." + orphans[0].rsplit(".", 1)[0] if "." in orphans[0] else "model",
                    evidence={"not_in_optimizer": orphans[:50], "trainable": total},
                    suggestions=["Build the optimizer from model.parameters() of the model you train."]))
        for state in self._optimizers.values():
            if state.get("changed") == 0 and state.get("with_grad"):
                self.findings.append(Finding(
                    "GRD002", f"The optimizer stepped but changed none of the {state['with_grad']} parameters "
                    "that had gradients (learning rate 0, or every update masked).", location="optimizer",
                    evidence={"params_with_grad": state["with_grad"]},
                    suggestions=["Check the learning rate and the optimizer's parameter groups."]))

    def _before_group_destroyed(self) -> None:
        """The script is destroying its process group: keep its store and measure the model while both live."""
        try:
            self._exchange.remember_store()
            self._rank_facts.take_checksums(self.steps)
        except Exception:  # never let the watcher break the user's shutdown
            pass

    def report(self) -> Report:
        """The findings so far (call after the loop; the context manager judges on exit). In a distributed
        run every rank must call it: rank 0 gets the merged report of all ranks, the others their own."""
        if not self._ended:
            self.on_run_end()
        if self._report is None:
            checks = [CheckRecord("monitor", "failed" if any(f.severity.value != "info" for f in self.findings)
                                  else "passed", time.monotonic() - self._started, f"{self.steps} optimizer steps",
                                  "run")]
            self._report = Report(findings=list(self.findings), checks=checks, meta={
                "steps": self.steps, "extras": {"loss_curve": live_curve.downsample(self.losses)}})
            rank, size = world()
            if size > 1:
                self._merge_ranks(self._report, rank, size)
        return self._report

    def _merge_ranks(self, report: Report, rank: int, size: int) -> None:
        if self._rank_facts.checksums and max(self._rank_facts.checksums) < self.steps:
            self._rank_facts.take_checksums(self.steps)
        payload = {"facts": self._rank_facts.summary(), "steps": self.steps,
                   "findings": [f.to_dict() for f in self.findings]}
        # A rank that crashed may have left the others stuck in a collective: wait for them only briefly.
        gathered = self._exchange.gather(rank, size, payload, brief=self.error is not None)
        report.meta.update({"rank": rank, "world_size": size})
        if gathered is None:
            if self._exchange.rank0_absent:  # nobody else will tell this rank's findings: it reports them itself
                report.findings = distributed.merge([(rank, [Finding.from_dict(f.to_dict()) for f in self.findings])],
                                                    size)
                report.meta["unmerged"] = True
            return
        per_rank = [(p["facts"]["rank"], [Finding.from_dict(d) for d in p["findings"]]) for p in gathered]
        report.findings = distributed.merge(per_rank, size) + distributed.judge([p["facts"] for p in gathered])
        reported = sorted(p["facts"]["rank"] for p in gathered)
        report.meta.update({"ranks_reported": reported,
                            "ranks_missing": [r for r in range(size) if r not in reported],
                            "steps_per_rank": {str(p["facts"]["rank"]): p["steps"] for p in gathered}})
        if any(f.severity.value != "info" for f in report.findings):
            report.checks[0].status = "failed"
