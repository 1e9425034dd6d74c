"""Step 1, "get the model to run": one forward, loss, backward and optimizer step on one batch, on copies.

A crash becomes a finding (RUN001-RUN005) naming the module, the phase, the user's line and the chain
of shapes that led there. Silent dtype problems (integer regression targets) are reported as RUN002.
"""
from __future__ import annotations

import inspect
import math
import os
import re
import warnings
from typing import Any

import torch
from torch import nn

from nndoctor.checks import check
from nndoctor.checks.crash_advice import (
    known_evidence,
    known_fix,
    likely_cause,
    lower_first,
    with_search,
)
from nndoctor.context import Context
from nndoctor.data import describe, split_batch, tensors_in
from nndoctor.probes.errors import ErrorInfo, classify, is_library_file, short_path
from nndoctor.probes.trace import Call, ModuleTrace
from nndoctor.task import REGRESSION_LOSSES

CODE_OF_KIND = {"shape": "RUN001", "dtype": "RUN002", "device": "RUN003", "memory": "RUN004", "other": "RUN005"}


@check(
    "one-training-step", step="run", codes=("RUN001", "RUN002", "RUN003", "RUN004", "RUN005", "DAT003"),
    needs_run=False, prerequisite=True,
)
def one_training_step(ctx: Context) -> None:
    """Run forward, loss, backward and an optimizer step on a copy; turn any crash into a finding."""
    try:
        batch = ctx.first_batch()
    except Exception as exc:  # the user's data pipeline raised
        info = classify(exc, "data")
        ctx.run_error = exc
        ctx.emit("RUN005", f"Reading the first training batch failed: {info.summary}{likely_cause(info)}",
                 location=info.source or "train_data", evidence={"phase": "data", "error": info.summary,
                                                                 **known_evidence(info)},
                 suggestions=with_search(info, known_fix(info) + [
                     "Iterate your DataLoader once by hand (`next(iter(loader))`) to see the error."]))
        return
    model = ctx.fresh_model()
    optimizer = _build_optimizer(ctx, model)
    if optimizer is None:
        return
    pair = ctx.pair(batch)
    if pair is not None:
        _silent_dtype_problems(ctx, model, *pair)
    phase = "forward"
    outputs = None
    with ModuleTrace(model) as trace:
        try:
            model.train()  # a training step (MOD001 reports a model left in eval mode separately)
            if ctx.setup.step is not None:
                phase = "step"
                loss = ctx.setup.step(model, batch)
            else:
                inputs, targets = pair
                outputs = ctx.forward(model, inputs)
                phase = "loss"
                loss = ctx.setup.loss_fn(outputs, targets)
            phase = "loss"
            if not isinstance(loss, torch.Tensor) or loss.numel() != 1:
                what = describe(loss)
                ctx.run_error = TypeError(f"loss is {what}")
                ctx.emit("RUN005", f"The loss must be a scalar tensor; it is {what}.",
                         location="loss_fn" if ctx.setup.step is None else "step",
                         evidence={"phase": "loss", "loss": what},
                         suggestions=["Reduce the loss to one number (`reduction='mean'` or `.mean()`)."
                                      if isinstance(loss, torch.Tensor) else
                                      "Return the loss tensor itself, not `.item()` or a Python number."])
                return
            phase = "backward"
            loss.backward()
            phase = "step"
            optimizer.step()
        except Exception as exc:
            if phase == "step" and ctx.setup.step is not None and trace.failing() is not None:
                phase = "forward"
            _report_crash(ctx, classify(exc, phase), trace, model, batch, outputs)
            return
    ctx.run_ok = True
    ctx.extras["first_loss"] = float(loss.detach()) if math.isfinite(float(loss.detach())) else str(float(loss.detach()))
    ctx.measure("module_calls", lambda: [(c.path, type(c.module).__name__, c.input_shapes, c.output_shapes)
                                         for c in trace.calls])


def _build_optimizer(ctx: Context, model: nn.Module) -> torch.optim.Optimizer | None:
    try:
        return ctx.optimizer_for(model)
    except Exception as exc:
        info = classify(exc, "step")
        ctx.run_error = exc
        hint = ("All parameters may be frozen (requires_grad=False) or the model has none."
                if "empty parameter list" in str(exc) else "Check how the optimizer is built.")
        ctx.emit("RUN005", f"Building the optimizer failed: {info.summary}{likely_cause(info)}", location="optimizer",
                 evidence={"phase": "optimizer", "error": info.summary, **known_evidence(info)},
                 suggestions=with_search(info, [hint] + known_fix(info)))
        return None


def _silent_dtype_problems(ctx: Context, model: nn.Module, inputs: Any, targets: Any) -> None:
    loss_fn = ctx.setup.loss_fn
    if isinstance(loss_fn, REGRESSION_LOSSES) and isinstance(targets, torch.Tensor) and not targets.is_floating_point():
        ctx.emit("RUN002",
                 f"{type(loss_fn).__name__} gets integer targets ({str(targets.dtype).replace('torch.', '')}, "
                 f"shape {tuple(targets.shape)}): a regression loss needs float targets, and integer targets "
                 "usually mean class indices went to a regression loss.",
                 location="loss_fn", evidence={"target_dtype": str(targets.dtype), "loss": type(loss_fn).__name__},
                 suggestions=["Convert the targets with `y.float()` (and check that the task really is regression)."])


def _report_crash(ctx: Context, info: ErrorInfo, trace: ModuleTrace, model: nn.Module, batch: Any, outputs: Any) -> None:
    ctx.run_error = info.exc
    if info.kind == "memory":
        return  # checks/memory.py reports RUN004 with a breakdown (it reads ctx.run_error)
    failing = trace.failing() if info.phase in ("forward", "step") else None
    location = trace.qualified(failing.path) if failing else _phase_location(ctx, info)
    chain = trace.chain(upto=failing)
    evidence: dict[str, Any] = {"phase": info.phase, "error": info.summary, "chain": chain, **known_evidence(info)}
    if info.source:
        evidence["source"] = info.source
        evidence["source_line"] = info.source_line
    where = f" in {location} ({_describe_module(failing.module)})" if failing else f" in the {info.phase}"
    code = "DAT003" if info.kind == "targets" else CODE_OF_KIND[info.kind]
    suggestions: list[str] = []
    if failing:
        evidence["module_type"] = type(failing.module).__name__
        evidence["got"] = failing.inputs
        message = f"The {info.phase} crashed{where}: it got {failing.inputs}. {info.summary}"
    else:
        message = f"The {info.phase} crashed: {info.summary}"
    if info.phase == "loss" and outputs is not None:
        pair = split_batch(batch)
        evidence["outputs"] = describe(outputs)
        evidence["targets"] = describe(pair[1]) if pair else "?"
        message += f" (outputs {evidence['outputs']}, targets {evidence['targets']})"
    if info.kind == "shape":
        suggestions += _shape_fixes(failing, info, outputs, batch)
    elif info.kind == "dtype":
        suggestions += _dtype_fixes(model, batch)
    elif info.kind == "device":
        suggestions += _device_fixes(model, batch)
        evidence["devices"] = sorted({str(t.device) for t in list(model.parameters()) + list(model.buffers())}
                                     | {str(t.device) for t in tensors_in(batch)})
    elif info.kind == "targets":
        suggestions += ["Class indices must lie in [0, C-1] for C output units: shift labels 1..C to 0..C-1, "
                        "or set `ignore_index` for padding labels such as -1."]
    else:
        cause, fix, op_site = _explain_other(ctx, info, model, batch)
        if cause:
            message += f" Likely cause: {lower_first(cause)}"
        if op_site:
            evidence["forward_site"] = op_site
            message += f" The tensor was produced at {op_site}."
            if not failing:
                location = op_site
        suggestions += fix
    if info.source and "source" not in message:
        message += f" (at {info.source}: `{info.source_line}`)"
    if chain:
        message += " Shapes before it: " + "; ".join(chain[-4:]) + "."
    # The specialised explanations above come first; the catalogue's fix only where they had none to give
    ctx.emit(code, message, location=location, evidence=evidence,
             suggestions=with_search(info, suggestions or known_fix(info)))


def _phase_location(ctx: Context, info: ErrorInfo) -> str:
    if info.phase == "loss":
        return "loss_fn" if ctx.setup.step is None else "step"
    if info.phase == "step":
        return "optimizer"
    return info.source or info.phase


def _describe_module(module: nn.Module) -> str:
    if any(True for _ in module.children()):
        return type(module).__name__
    return repr(module)


def _shape_fixes(failing: Call | None, info: ErrorInfo, outputs: Any, batch: Any) -> list[str]:
    if failing is None:
        pair = split_batch(batch)
        if isinstance(outputs, torch.Tensor) and pair and isinstance(pair[1], torch.Tensor):
            out, y = outputs.shape, pair[1].shape
            if len(y) == len(out) and y[-1] == 1 and len(out) >= 2:
                return [f"Targets have shape {tuple(y)}: squeeze them to {tuple(y[:-1])} (`y.squeeze(-1)`)."]
            return [f"Make the outputs {tuple(out)} and the targets {tuple(y)} match what the loss expects "
                    "(class indices (N,) for cross-entropy; the same shape as the outputs for MSE/BCE)."]
        return []
    module = failing.module
    shape = failing.input_shapes[0] if failing.input_shapes else ()
    if isinstance(module, nn.Linear) and shape:
        flat = math.prod(shape[1:]) if len(shape) > 1 else shape[0]
        if len(shape) > 2 and flat == module.in_features:
            return [f"Add `nn.Flatten()` before {type(module).__name__}: its input {shape} flattens to "
                    f"{flat} features, exactly in_features."]
        if len(shape) > 2:
            return [f"The input {shape} is not flat: add `nn.Flatten()` and set in_features={flat} "
                    "(or use `nn.LazyLinear`)."]
        return [f"Set in_features={shape[-1]} (the size that arrives), or fix the layer before it "
                "(or use `nn.LazyLinear`)."]
    if isinstance(module, nn.modules.conv._ConvNd) and shape:
        if len(shape) >= 3 and shape[-1] == module.in_channels and shape[1] != module.in_channels:
            perm = "x.permute(0, 3, 1, 2)" if len(shape) == 4 else "move the channel axis to dim 1"
            return [f"The input looks channels-last {shape} while {type(module).__name__} expects channels "
                    f"first (N, C, ...): use `{perm}`."]
        if len(shape) >= 2 and shape[1] != module.in_channels:
            return [f"Set in_channels={shape[1]} or fix the previous layer's output channels."]
        return ["Add the missing batch or channel dimension (e.g. `x.unsqueeze(1)` for one channel)."]
    if isinstance(module, nn.modules.batchnorm._BatchNorm) and len(shape) >= 2:
        return [f"Set num_features={shape[1]} (the channel size that arrives)."]
    if isinstance(module, nn.Embedding):
        return ["Indices must be integers in [0, num_embeddings)."]
    return [f"Check what {type(module).__name__} expects against the shape it got ({failing.inputs})."]


def _dtype_fixes(model: nn.Module, batch: Any) -> list[str]:
    param_dtypes = sorted({str(p.dtype).replace("torch.", "") for p in model.parameters()})
    data_dtypes = sorted({str(t.dtype).replace("torch.", "") for t in tensors_in(batch)})
    fixes = []
    if "float64" in data_dtypes and "float64" not in param_dtypes:
        fixes.append("The inputs are float64 (numpy's default) and the weights float32: convert the inputs "
                     "with `x.float()` (or `torch.as_tensor(x, dtype=torch.float32)`).")
    fixes.append(f"Data dtypes: {', '.join(data_dtypes) or '-'}; parameter dtypes: {', '.join(param_dtypes) or '-'}. "
                 "Class indices must be int64 (`y.long()`); regression and BCE targets float (`y.float()`).")
    return fixes


def _device_fixes(model: nn.Module, batch: Any) -> list[str]:
    return ["Move the model once with `model.to(device)`, register constant tensors as buffers "
            "(`self.register_buffer(...)`), and create new tensors with `device=x.device`."]


def _explain_other(ctx: Context, info: ErrorInfo, model: nn.Module, batch: Any) -> tuple[str, list[str], str]:
    """The crash catalogue's cause and fix; for a backward error, also the forward line that made the failing node."""
    if info.known is None:
        return "", ["Read the error above; the location names your line."], ""
    site = _forward_site_of_backward_error(ctx, batch) if info.phase == "backward" else ""
    return info.known.cause, [info.known.fix], site


def _forward_site_of_backward_error(ctx: Context, batch: Any) -> str:
    """Replay the step under anomaly mode to learn which forward line created the failing node."""
    model = ctx.fresh_model().train()
    with warnings.catch_warnings(record=True) as caught, torch.autograd.set_detect_anomaly(True, check_nan=False):
        warnings.simplefilter("always")
        try:
            loss, _ = ctx.loss_of(model, batch)
            loss.backward()
        except Exception:
            pass
    for w in caught:
        text = str(w.message)
        if "Traceback of forward call" not in text:
            continue
        frames = re.findall(r'File "([^"]+)", line (\d+), in (\S+)\n\s*(.*)', text)
        user = [f for f in frames if not is_library_file(f[0])]
        if user:
            filename, line, func, code = user[-1]
            owner = _module_defining(model, filename, int(line))
            prefix = f"model.{owner}".rstrip(".") + " " if owner is not None else ""
            return f"{prefix}{short_path(filename)}:{line} (`{code.strip()}`)"
    return ""


def _module_defining(model: nn.Module, filename: str, line: int) -> str | None:
    """The path of the innermost module whose ``forward`` source contains ``filename:line``."""
    found = None
    for path, module in model.named_modules():
        try:
            lines, start = inspect.getsourcelines(type(module).forward)
            source = inspect.getsourcefile(type(module).forward)
        except (OSError, TypeError):
            continue
        if source and os.path.samefile(source, filename) and start <= line < start + len(lines):
            found = path
    return found

