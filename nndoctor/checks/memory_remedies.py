"""RUN004's remedies: what would save the most memory at the user's batch size, estimated from the growth
model (``PeakModel``) of a step: a smaller batch with gradient accumulation, activation checkpointing,
mixed precision, a lighter optimizer, freezing a part. Each remedy's saving and whether it then fits.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from torch import nn

from nndoctor.probes.memory import MiB, PeakModel

CONCENTRATION = 0.9  # a child holding this share of its parent's total (activations, parameters) is looked into

@dataclass
class Remedy:
    key: str
    saving: float  # bytes off the peak at the user's batch size
    peak: float
    fits: bool
    text: str



def _remedies(sampler: Any, model: PeakModel, budget: float, largest: int, peak: float) -> list[Remedy]:
    full = sampler.full
    parts = model.parts(full)
    found: list[Remedy] = []

    def add(key: str, new_peak: float, text: str) -> None:
        saving = peak - new_peak
        if saving > 0.01 * peak:
            fits = new_peak <= budget
            outcome = f"peak {_mib(new_peak)}, {'fits' if fits else 'still over'} the budget"
            found.append(Remedy(key, saving, new_peak, fits, f"{text} Saves about {_mib(saving)} ({outcome})."))

    if largest >= 1:
        micro, steps = _micro_batch(full, largest)
        new = sampler.peak(micro) if micro in sampler.measured else model.peak(micro)
        batchnorm = any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in sampler.model.modules())
        add("batch-and-accumulation", new,
            f"Batch {micro} with {steps} gradient-accumulation steps keeps the effective batch ({micro * steps}): "
            f"divide the loss by {steps} and call `optimizer.step()`/`zero_grad()` every {steps} batches"
            + (f" (batch-norm then sees {micro} samples per batch)." if batchnorm else "."))
    plan = _checkpoint_plan(sampler.model, model, full)
    if plan is not None:
        forward_backward, text = plan
        add("activation-checkpointing", model.peak(full, activations=forward_backward, transient=0.0), text)
    half = _mixed_precision_activations(sampler, model)
    if half is not None:
        add("mixed-precision", model.peak(full, activations=half),
            f"Mixed precision stores most activations in 16 bits ({sampler.how}: {_mib(half)} instead of "
            f"{_mib(parts['activations'])}): `with torch.autocast('{sampler.device.type}', dtype=torch.bfloat16):` "
            "around the forward and loss (float16 on older GPUs, with `torch.amp.GradScaler`).")
    _optimizer_remedy(sampler, model, parts, add)
    _freezing_remedy(sampler, model, parts, add)
    return found


def _mixed_precision_activations(sampler: Any, model: PeakModel) -> float | None:
    """Activations saved under autocast at the user's batch size, from one forward pass (None: fails).

    ``sampler.saved_bytes(size, autocast)`` traces it (fake tensors) or measures it (the fallback)."""
    try:
        saved = sampler.saved_bytes(model.large.batch_size, autocast=True)
    except Exception:  # an op without a 16-bit kernel here, or out of memory: no estimate
        return None
    return saved * sum(model.activations(sampler.full).values()) / max(1, model.large.activation_bytes)


def _micro_batch(full: int, largest: int) -> tuple[int, int]:
    """A batch that fits and the accumulation steps that restore ``full``: a divisor of it when one is close."""
    divisor = max(d for d in range(1, min(full, largest) + 1) if full % d == 0)
    if 2 * divisor >= largest:
        return divisor, full // divisor
    steps = math.ceil(full / largest)
    return math.ceil(full / steps), steps


def _optimizer_remedy(sampler: Any, model: PeakModel, parts: dict[str, float], add: Any) -> None:
    elements = sum(p.numel() for p in sampler.model.parameters() if p.requires_grad)
    state = parts["optimizer_state"]
    if not elements or state / elements <= 2.5:  # already 8-bit-like or stateless
        return
    eight_bit = 2 * elements  # two 8-bit states per parameter
    text = (f"A lighter optimizer state: {model.large.optimizer} keeps {state / elements:.0f} bytes per parameter "
            f"({_mib(state)}); 8-bit Adam (`bitsandbytes.optim.Adam8bit`) keeps 2")
    if state / elements > 4.5:
        text += f", SGD with momentum 4 (saves {_mib(state - 4 * elements)}), plain SGD none."
    else:
        text += ", plain SGD none."
    add("lighter-optimizer", model.peak(sampler.full, optimizer_state=eight_bit), text)


def _freezing_remedy(sampler: Any, model: PeakModel, parts: dict[str, float], add: Any) -> None:
    """Freeze the top-level part whose gradients and optimizer state (and activations) weigh most.

    The last part run (the head) is never proposed. A part that runs before any other trainable module
    needs no backward pass at all once frozen, so its saved activations go too.
    """
    prefix, container = _descend(sampler.model, lambda m: sum(p.numel() for p in m.parameters() if p.requires_grad))
    order = model.large.order
    named = [(f"{prefix}.{n}", child) for n, child in container.named_children()]
    named = [(path, child) for path, child in named if path in order and _trainable(child)]
    named.sort(key=lambda pc: order.index(pc[0]))
    if len(named) < 2:
        return
    param_names = {id(p): n for n, p in sampler.model.named_parameters()}
    trainable_calls = [order.index(f"model.{q}".rstrip(".")) for q, m in sampler.model.named_modules()
                       if f"model.{q}".rstrip(".") in order and _trainable(m, recurse=False)]
    state, grads = model.large.state_by_parameter, model.large.grad_by_parameter
    acts = model.activations(sampler.full)
    best = None
    for path, child in named[:-1]:
        own = [param_names[id(p)] for p in child.parameters() if p.requires_grad and id(p) in param_names]
        inside = [i for i, q in enumerate(order) if q == path or q.startswith(path + ".")]
        first = min(trainable_calls) >= min(inside)  # no trainable module runs before it
        held = sum(b for p, b in acts.items() if p == path or p.startswith(path + ".")) if first else 0.0
        new = model.peak(sampler.full, gradients=parts["gradients"] - sum(grads.get(n, 0) for n in own),
                         optimizer_state=parts["optimizer_state"] - sum(state.get(n, 0) for n in own),
                         activations=parts["activations"] - held)
        if best is None or new < best[0]:
            best = (new, path, sum(p.numel() for p in child.parameters()), first)
    new, path, count, first = best
    add("freeze-parts", new,
        f"Freeze {path} ({count:,} parameters) if it is pretrained: `requires_grad_(False)` removes its "
        "gradients and optimizer state" + (" and, as it runs first, its saved activations." if first else "."))


def _trainable(module: nn.Module, recurse: bool = True) -> bool:
    return any(p.requires_grad for p in module.parameters(recurse=recurse))


def _descend(module: nn.Module, weight: Any, prefix: str = "model") -> tuple[str, nn.Module]:
    """From ``module`` down through children that hold nearly all of ``weight``: the level where it splits."""
    while True:
        children = list(module.named_children())
        total = weight(module)
        heavy = [(n, c) for n, c in children if total and weight(c) >= CONCENTRATION * total]
        if len(heavy) != 1:
            return prefix, module
        name, module = heavy[0]
        prefix = f"{prefix}.{name}"


def _checkpoint_plan(net: nn.Module, model: PeakModel, full: int) -> tuple[float, str] | None:
    """The forward/backward bytes with the activation-holding blocks checkpointed, and how to do it.

    Blocks are cut into segments of consecutive blocks; every segment but the last keeps only its input
    (as ``checkpoint_sequential`` does) and runs again in the backward pass, where its activations live
    next to the inputs kept before it and the usual gradient temporaries. The segment length with the
    lowest peak wins.
    """
    acts = model.activations(full)
    inputs = model.module_inputs(full)
    transient = model.parts(full)["transient"]

    def held(path: str) -> float:
        return sum(b for p, b in acts.items() if p == path or p.startswith(path + "."))

    paths = {id(m): (f"model.{p}" if p else "model") for p, m in net.named_modules()}
    prefix, container = _descend(net, lambda m: held(paths[id(m)]))
    order = model.large.order
    units = [paths[id(c)] for _, c in container.named_children() if paths[id(c)] in order and held(paths[id(c)]) > 0]
    units.sort(key=order.index)
    if len(units) < 2:
        return None
    elsewhere = sum(acts.values()) - sum(held(u) for u in units)  # activations outside the blocks stay
    best_peak, best_length = sum(acts.values()) + transient, 0
    for length in range(1, len(units)):
        segments = [units[i:i + length] for i in range(0, len(units), length)]
        kept = [inputs.get(seg[0], 0.0) for seg in segments[:-1]]
        forward = elsewhere + sum(kept) + sum(held(u) for u in segments[-1]) + transient
        recompute = max(elsewhere + sum(kept[:j + 1]) + sum(held(u) for u in seg) + transient
                        for j, seg in enumerate(segments[:-1]))
        if max(forward, recompute) < best_peak:
            best_peak, best_length = max(forward, recompute), length
    if not best_length:
        return None
    heaviest = ", ".join(sorted(units, key=lambda u: -held(u))[:3])
    n_segments = math.ceil(len(units) / best_length)
    if best_length == 1:
        how = (f"wrap each block of {prefix} but the last in `torch.utils.checkpoint.checkpoint(block, x, "
               f"use_reentrant=False)` (heaviest: {heaviest})")
    elif isinstance(container, nn.Sequential):
        how = (f"`torch.utils.checkpoint.checkpoint_sequential({prefix}, segments={n_segments}, input=x, "
               f"use_reentrant=False)` (heaviest layers: {heaviest})")
    else:
        how = (f"checkpoint {n_segments - 1} groups of {best_length} consecutive blocks of {prefix} "
               f"(heaviest: {heaviest})")
    if hasattr(net, "gradient_checkpointing_enable"):  # Hugging Face models checkpoint their own layers
        how = f"`model.gradient_checkpointing_enable()`, or {how}"
    return best_peak, (f"Activation checkpointing keeps only block inputs and recomputes the rest in the backward "
                       f"pass (about one more forward pass of compute): {how}.")


def _mib(n: float) -> str:
    if abs(n) < 0.1 * MiB:
        return f"{n / 1024:,.1f} KiB"
    return f"{n / MiB:,.1f} MiB"
