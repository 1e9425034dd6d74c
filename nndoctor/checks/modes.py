"""Step 2, train/eval mode: modules left in eval mode for training (MOD001), and batch-norm layers that
will see batches of one or a few samples (MOD003).

Both are read from the model and the loader as handed over, without running anything: the mode flags of
modules whose behaviour depends on them, the batch-norm inputs seen in step 1, and the batch sizes the
training loader yields in an epoch (including its last, partial batch). MOD002 (evaluating in train
mode) needs an evaluation loop and belongs to ``nndoctor run``.
"""
from __future__ import annotations

import inspect
import math
from functools import lru_cache

from torch import nn

from nndoctor.checks import SkipCheck, check
from nndoctor.context import Context
from nndoctor.findings import Finding
from nndoctor.probes.batch_sizes import batch_sizes
from nndoctor.probes.small_batch import forward_failure

# ----- MOD001 ----------------------------------------------------------------------------------


@check("training-mode", step="bugs", codes=("MOD001",), needs_run=False)
def training_mode(ctx: Context) -> None:
    """Modules whose behaviour depends on train/eval mode, handed over in eval mode, in trainable parts."""
    if ctx.setup.trained:
        raise SkipCheck("the model is evaluated as given (Setup(trained=True)): eval mode is expected")
    model = ctx.fresh_model()  # a copy keeps the user's flags
    if not any(p.requires_grad for p in model.parameters()):
        raise SkipCheck("no parameter is trainable")
    frozen_parts = []
    stuck = []
    for path, module in model.named_modules():
        if module.training or not mode_dependent(module):
            continue
        (stuck if _trainable_context(model, path) else frozen_parts).append((path, module))
    if not stuck:
        return
    names = [f"{_name(path)} ({_short(module)})" for path, module in stuck]
    listed = ", ".join(names[:6]) + (f" and {len(names) - 6} more" if len(names) > 6 else "")
    evidence = {"modules": [_name(p) for p, _ in stuck], "model_training": model.training,
                "frozen_in_eval": [_name(p) for p, _ in frozen_parts]}
    if not model.training:
        # Hugging Face's from_pretrained() returns models in eval mode and its Trainer calls train(): only
        # a loop of your own trains them in eval mode.
        hugging_face = type(model).__module__.startswith("transformers.")
        note = (" (`from_pretrained()` returns models in eval mode; the Trainer switches to train mode, a "
                "loop of your own must)") if hugging_face else ""
        ctx.emit("MOD001",
                 f"The model was handed over in eval mode (`model.training` is False){note}, and {listed} behave "
                 "differently in it: a training loop that does not call `model.train()` trains with dropout off "
                 "and batch-norm normalising with running statistics that never update.",
                 location="model", evidence=evidence, severity="warning" if hugging_face else None,
                 suggestions=["Call `model.train()` at the start of every training epoch, and `model.eval()` only "
                              "around evaluation.",
                              "If you hand nndoctor a trained model to evaluate, say so: `Setup(trained=True)`."])
        return
    parents = sorted({_eval_root(model, path) for path, _ in stuck})
    ctx.emit("MOD001",
             f"Part of the model is in eval mode while the rest trains: {listed} "
             f"{'is' if len(stuck) == 1 else 'are'} in eval mode (set on {', '.join(_name(p) for p in parents)}), "
             "although the parameters around them are trainable: dropout is off and batch-norm uses running "
             "statistics there during training.",
             location=_name(parents[0]), severity="warning", evidence=evidence,
             suggestions=["Call `model.train()` on the whole model before training (a later `.eval()` on a "
                          "submodule, e.g. to freeze batch-norm, must come after it).",
                          "If the part is frozen on purpose, freeze its parameters too (`requires_grad_(False)`)."])


def mode_dependent(module: nn.Module) -> bool:
    """Whether ``module``'s own forward computes something else in train and eval mode."""
    if isinstance(module, nn.modules.dropout._DropoutNd):
        return module.p > 0
    if isinstance(module, (nn.modules.batchnorm._BatchNorm, nn.modules.instancenorm._InstanceNorm)):
        return module.track_running_stats  # without running statistics both modes use the batch's
    if isinstance(module, nn.RNNBase):
        return module.dropout > 0 and module.num_layers > 1
    if isinstance(module, nn.MultiheadAttention):
        return module.dropout > 0
    return _reads_training_flag(type(module))


@lru_cache(maxsize=None)
def _reads_training_flag(cls: type) -> bool:
    """A user-defined module whose forward reads ``self.training`` (stochastic depth, noise layers)."""
    if cls.__module__.split(".")[0] == "torch":
        return False  # torch's own modules are covered above; others read it only to pick a fast path
    try:
        return "self.training" in inspect.getsource(cls.forward)
    except (OSError, TypeError):
        return False


def _trainable_context(model: nn.Module, path: str) -> bool:
    """Whether the nearest module around ``path`` (itself, else its parents) that has parameters trains
    any: a mode-dependent module inside a frozen part (a frozen backbone kept in eval) is deliberate."""
    parts = path.split(".") if path else []
    for depth in range(len(parts), -1, -1):
        params = list(model.get_submodule(".".join(parts[:depth])).parameters())
        if params:
            return any(p.requires_grad for p in params)
    return False


def _eval_root(model: nn.Module, path: str) -> str:
    """The outermost module in eval mode that contains ``path`` (where `.eval()` was probably called)."""
    parts = path.split(".")
    for depth in range(1, len(parts) + 1):
        candidate = ".".join(parts[:depth])
        if not model.get_submodule(candidate).training:
            return candidate
    return path


def _name(path: str) -> str:
    return f"model.{path}".rstrip(".")


def _short(module: nn.Module) -> str:
    text = repr(module)
    return text if len(text) <= 40 and "\n" not in text else type(module).__name__


# ----- MOD003 ----------------------------------------------------------------------------------

TINY = 4  # batch-norm statistics from fewer samples than this are noise (and one sample crashes 1d)


@check("batchnorm-batch-size", step="bugs", codes=("MOD003",))
def batchnorm_batch_size(ctx: Context) -> None:
    """Batch-norm layers in train mode, against the batch sizes the training loader yields in an epoch."""
    calls = ctx.measure("module_calls", lambda: None) or []  # step 1's forward: (path, type, inputs, outputs)
    model = ctx.fresh_model()
    layers = {}
    for path, _type, input_shapes, _outputs in calls:
        module = model.get_submodule(path)
        batch_norm = isinstance(module, nn.modules.batchnorm._BatchNorm) and module.training
        if batch_norm and input_shapes and path not in layers:
            layers[path] = (module, input_shapes[0])
    if not layers:
        raise SkipCheck("no batch-norm layer in train mode")
    sizes = batch_sizes(ctx.train)
    if sizes is None:
        raise SkipCheck("the training loader's batch sizes cannot be read from its settings")
    smallest = sizes.sizes[0]
    if smallest >= TINY:
        return
    # values each channel's statistics are computed from: samples x positions (H x W for images)
    per_channel = {path: smallest * math.prod(shape[2:]) for path, (_, shape) in layers.items()}
    crashing = [p for p, v in per_channel.items() if v == 1]
    first = crashing[0] if crashing else next(iter(layers))
    names = ", ".join(f"{_name(p)} ({type(layers[p][0]).__name__})" for p in layers)
    remainder = smallest == sizes.last and smallest != sizes.batch_size  # the partial last batch
    plural = "s" if smallest > 1 else ""
    if not remainder:
        batches = f"Every batch has {smallest} sample{plural}"
    elif sizes.batch_size < TINY:
        batches = f"Every batch has {sizes.batch_size} samples and the last one {smallest}"
    else:
        batches = f"The last batch of every epoch has {smallest} sample{plural}"
    message = (f"{batches} ({sizes.samples} samples, {sizes.how}), and batch-norm in train mode normalises with "
               f"the statistics of the batch: {names}.")
    failure = forward_failure(ctx, ctx.first_batch(), smallest) if crashing else None
    if failure:  # measured: a copy's forward on that many samples raises, so the batch size is the cause
        message += (f" Measured: a copy's forward pass on {smallest} sample{plural} in train mode raises "
                    f"\"{failure}\": training crashes at that batch.")
    elif crashing:
        message += (f" With one value per channel, {_name(crashing[0])} raises \"Expected more than 1 value per "
                    "channel when training\": training crashes at that batch.")
    else:
        message += (" Statistics of so few samples are noise, and they update the running averages that "
                    "evaluation uses.")
    fixes = []
    if remainder:
        fixes.append(f"`DataLoader(..., drop_last=True)` drops the last batch of {smallest} "
                     f"({sizes.samples} = {sizes.samples // sizes.batch_size} x {sizes.batch_size} + {sizes.last}), "
                     "or pick a batch size that leaves no tiny remainder.")
    if sizes.batch_size < TINY:
        fixes.append("Use a larger batch.")
    fixes.append("Or replace batch-norm with GroupNorm/LayerNorm, which do not depend on the batch.")
    evidence = {"batch_size": sizes.batch_size, "smallest_batch": smallest, "samples": sizes.samples,
                "drop_last": sizes.drop_last, "layers": [_name(p) for p in layers],
                "values_per_channel": {_name(p): v for p, v in per_channel.items()}}
    if failure:
        # only the crash is measured; the noise of 2-3 samples' statistics is a risk without a measured harm
        evidence.update(cause="batch-size", measured_failure=failure)
    # a crash is an error; 2-3 samples' noise is a risk no one pass measures: info (the compare step's
    # batch-size experiment confirms harm where a symptom is seen)
    ctx.emit("MOD003", message, location=_name(first), severity="error" if crashing else "info",
             evidence=evidence, suggestions=fixes)


# ----- live runs (``nndoctor run``, Monitor): the modes watcher's measurements -----------------------------
def judge_live(watcher) -> list[Finding]:
    """MOD001 when optimizer steps ran with dropout/batch-norm in eval mode; MOD002 when evaluation (forwards
    without gradients) ran them in train mode, counting only forwards rarer than the steps (a validation pass
    per epoch), not those inside most training steps (a GAN's fakes, pseudo-labels)."""
    found, steps = [], watcher.run.steps
    if watcher.root_eval_steps:
        names = sorted(watcher.eval_training_steps)
        found.append(Finding(
            "MOD001", f"{watcher.root_eval_steps} of {steps} optimizer steps ran with the model in eval "
            f"mode: dropout/batch-norm layers {', '.join('model.' + n for n in names[:5])} "
            "behave as in evaluation while training.", location="model",
            evidence={"steps_in_eval": watcher.root_eval_steps, "steps": steps, "modules": names[:20]},
            suggestions=["Call model.train() at the start of every training epoch (after validation)."]))
    evals = {name: n for name, n in watcher.train_mode_evals.items()
             if watcher.nograd_steps.get(watcher.train_mode_eval_root[name], 0) < 0.25 * max(steps, 1)}
    if evals:
        calls = sum(evals.values())
        names = sorted(evals)
        found.append(Finding(
            "MOD002", f"{calls} forward passes without gradients (evaluation) ran with the model in train "
            f"mode: {', '.join('model.' + n for n in names[:5])} used training behaviour.",
            location="model", evidence={"forwards": calls, "modules": names[:20]},
            suggestions=["Call model.eval() before evaluating, and model.train() afterwards."]))
    return found
