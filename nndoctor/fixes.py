"""Mechanical fixes that can be tried on a copy, keyed by finding code: the doctor's proof.

Where a finding's fix is mechanical (remove a final softmax, rebuild the optimizer over the model's own
parameters, standardise the inputs...), a fix-applier turns the finding into a ``FixTrial``: the change,
as a ``Variant`` of the single-batch experiment, and, when the bug is not part of that experiment as
nndoctor runs it (a model handed over in eval mode), the variant that reproduces it. The overfit step
runs both and attaches the two curves to the finding (``checks/verified_fixes.py``).

Add a fix with ``@fix_for("CODE")`` on a function ``(ctx, finding) -> FixTrial | None`` (None: this
finding's fix is not mechanical, e.g. the location is not a module).
"""
from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from nndoctor import data as D
from nndoctor.context import Context
from nndoctor.findings import Finding
from nndoctor.probes.scoring import main_output
from nndoctor.trainer import Variant, lr_variant


@dataclass
class FixTrial:
    description: str  # the change, as the message says it: "with model.3 (Softmax) replaced by nn.Identity"
    after: Variant
    before: Variant | None = None  # None: the experiment as nndoctor runs it (its baseline)


_APPLIERS: dict[str, Callable[[Context, Finding], FixTrial | None]] = {}


def fix_for(*codes: str):
    """Register a fix-applier for findings of ``codes``."""

    def register(func: Callable[[Context, Finding], FixTrial | None]):
        for code in codes:
            _APPLIERS[code] = func
        return func

    return register


def trial_for(ctx: Context, finding: Finding) -> FixTrial | None:
    applier = _APPLIERS.get(finding.code)
    return applier(ctx, finding) if applier is not None else None


def module_at(model: nn.Module, location: str) -> tuple[str, nn.Module] | None:
    """The module a finding's location names ("model.head.2" -> ("head.2", module)), if it names one."""
    path = location.split(" ")[0]
    if path == "model":
        return "", model
    if not path.startswith("model."):
        return None
    path = path[len("model."):]
    try:
        return path, model.get_submodule(path)
    except AttributeError:
        return None


def replace_module(model: nn.Module, path: str, new: nn.Module) -> None:
    parent, _, name = path.rpartition(".")
    setattr(model.get_submodule(parent) if parent else model, name, new)


# ----- the fixes ------------------------------------------------------------------------------------
_PROBABILITY_LAYERS = (nn.Softmax, nn.Softmax2d, nn.Sigmoid)


@fix_for("LOS001")
def _logits_into_the_loss(ctx: Context, finding: Finding) -> FixTrial | None:
    """Remove the final softmax/sigmoid; when it is not a module, feed the loss log-probabilities
    (cross-entropy of log p is cross-entropy of the logits) or log-odds instead."""
    if ctx.setup.step is not None:
        return None
    found = module_at(ctx.fresh_model(), finding.location)
    if found is not None and found[0] and isinstance(found[1], _PROBABILITY_LAYERS):
        path, module = found
        return FixTrial(f"with model.{path} ({type(module).__name__}) replaced by nn.Identity",
                        Variant(label=f"without model.{path}", edit=lambda m: replace_module(m, path, nn.Identity())))
    loss_fn = ctx.setup.loss_fn
    if isinstance(loss_fn, nn.BCEWithLogitsLoss):
        return FixTrial("with the loss fed log-odds instead of probabilities (as if the sigmoid were removed)",
                        Variant(label="loss on log-odds",
                                loss_fn=lambda out, y: loss_fn(torch.logit(out.clamp(1e-6, 1 - 1e-6)), y)))
    return FixTrial("with the loss fed log-probabilities instead of probabilities (as if the softmax were removed)",
                    Variant(label="loss on log-probabilities", loss_fn=lambda out, y: loss_fn(out.clamp_min(1e-12).log(), y)))


@fix_for("LOS002")
def _log_probabilities_into_the_loss(ctx: Context, finding: Finding) -> FixTrial | None:
    """NLLLoss/KLDivLoss want log-probabilities: take the log of probabilities, log_softmax of logits."""
    pair = ctx.pair(ctx.first_batch())
    if pair is None:
        return None
    with torch.no_grad():
        out = main_output(ctx.forward(ctx.fresh_model().eval(), pair[0]), D.batch_len(pair[0]))
    if out is None or out.ndim < 2:
        return None
    loss_fn = ctx.setup.loss_fn
    probabilities = bool((out >= 0).all()) and bool(torch.allclose(out.sum(1), torch.ones_like(out.sum(1)), atol=1e-3))
    if probabilities:
        return FixTrial("with the log of the probabilities fed to the loss",
                        Variant(label="log of the outputs", loss_fn=lambda o, y: loss_fn(o.clamp_min(1e-12).log(), y)))
    return FixTrial("with log_softmax applied to the outputs before the loss",
                    Variant(label="log_softmax of the outputs", loss_fn=lambda o, y: loss_fn(F.log_softmax(o, dim=1), y)))


@fix_for("MOD001")
def _train_mode(ctx: Context, finding: Finding) -> FixTrial | None:
    return FixTrial("with model.train() before the training steps",
                    Variant(label="train mode"), before=Variant(label="eval mode", train_mode=False))


@fix_for("DAT001")
def _standardised_inputs(ctx: Context, finding: Finding) -> FixTrial | None:
    if ctx.setup.step is not None:
        return None
    return FixTrial("with the inputs standardised (zero mean, unit spread per feature, from the batch)",
                    Variant(label="standardised inputs", inputs=lambda x: D.map_tensors(_standardise, x)))


def _standardise(t: torch.Tensor) -> torch.Tensor:
    if not t.is_floating_point() or t.ndim < 2 or len(t) < 2:
        return t
    dims = [0] + list(range(2, t.ndim))  # per feature (N, F), per channel (N, C, ...)
    spread = t.std(dims, keepdim=True)
    # a feature nearly constant in this batch (a pixel that is almost always 0) must not be blown up
    return (t - t.mean(dims, keepdim=True)) / spread.clamp_min(float(spread.median()) + 1e-12)


@fix_for("GRD002")
def _optimizer_over_the_model(ctx: Context, finding: Finding) -> FixTrial | None:
    return rebuilt_optimizer(ctx)


def rebuilt_optimizer(ctx: Context) -> FixTrial:
    """The user's optimizer (class and hyperparameters) rebuilt over the copy's trainable parameters;
    a learning rate of 0 becomes the optimizer's default."""
    reference = ctx.optimizer_for(ctx.fresh_model())
    cls = type(reference)
    settings = {k: v for k, v in reference.param_groups[0].items() if k != "params" and k in reference.defaults}
    changed = ""
    if settings.get("lr") == 0:
        default = inspect.signature(cls.__init__).parameters.get("lr")
        settings["lr"] = default.default if default is not None and isinstance(default.default, float) else 1e-3
        changed = f", lr {settings['lr']:g} instead of 0"
    return FixTrial(f"with {cls.__name__} built over the model's own trainable parameters{changed}",
                    Variant(label="optimizer over the model",
                            optimizer=lambda m: cls([p for p in m.parameters() if p.requires_grad], **settings)))


@fix_for("GRD003")
def _lower_learning_rate(ctx: Context, finding: Finding) -> FixTrial | None:
    lr = ctx.optimizer_for(ctx.fresh_model()).param_groups[0].get("lr")
    if not isinstance(lr, (int, float)) or not lr > 0:
        return None
    return FixTrial("with the learning rate 10x lower", lr_variant(float(lr), -1))
