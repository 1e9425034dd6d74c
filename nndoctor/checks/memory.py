"""Out of memory (RUN004): does one training step fit the device, where does its memory go, what batch
fits, and what would save the most.

The budget is ``--memory SIZE`` / ``Setup(memory_budget=...)`` (on CPU it simulates a device of that
size); on a GPU the memory this process can use is the default, and an out-of-memory crash of step 1
(left unreported by ``one-training-step``) is analysed here instead of ending the run. Nothing is found
by crashing repeatedly: two measured steps give the growth per sample, the largest batch that fits is
extrapolated from it and then verified by measuring it and the next size up.
"""
from __future__ import annotations

import math
import os
import time
import traceback
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from nndoctor import data as D
from nndoctor.checks import SkipCheck, check
from nndoctor.checks import run as _run  # noqa: F401  registers one-training-step first: its ctx.run_error is read here
from nndoctor.context import Context
from nndoctor.probes.errors import classify
from nndoctor.probes.memory import MiB, PeakModel, StepMemory, forward_saved_bytes, measure_step

MAX_REFINEMENTS = 8  # measurement rounds to pin the largest batch down (each measures one or two sizes)
CONCENTRATION = 0.9  # a child holding this share of its parent's total (activations, parameters) is looked into


@check("memory-fit", step="run", codes=("RUN004",), needs_run=False)
def memory_fit(ctx: Context) -> None:
    """RUN004 when one step at the user's batch size needs more memory than the device (or budget) has."""
    crashed = ctx.run_error is not None and classify(ctx.run_error, "step").kind == "memory"
    if ctx.run_error is not None and not crashed:
        raise SkipCheck("the training step failed for another reason (reported above)")
    device = ctx.device
    budget, budget_source = _budget(ctx, device, crashed)
    if budget is None:
        raise SkipCheck("no memory budget: give `--memory SIZE` or Setup(memory_budget=...) to simulate a device")
    source = ""
    if crashed:  # the crashed step's tensors are kept alive by its traceback's frames: free them first
        source = classify(ctx.run_error, "step").source
        traceback.clear_frames(ctx.run_error.__traceback__)
        if device.type == "cuda":
            torch.cuda.empty_cache()
    sampler = _Sampler(ctx, device)
    if sampler.full < 1:
        raise SkipCheck("cannot tell the batch size of the first batch")
    model = sampler.fit_model(crashed)
    if model is None:
        _report_nothing_fits(ctx, sampler, budget, budget_source, source)
        return
    full = sampler.full
    at_full = sampler.measured.get(full)
    peak = at_full.peak if at_full is not None else model.peak(full)
    ctx.extras["memory"] = {"budget_bytes": budget, "batch_size": full, "peak_bytes": int(peak),
                            "bytes_per_sample": int(model.bytes_per_sample)}
    if not crashed and peak <= budget:
        return
    largest, verified = sampler.largest_batch(budget, model)
    _report(ctx, sampler, model, budget, budget_source, largest, verified, crashed, source)


def _budget(ctx: Context, device: torch.device, crashed: bool) -> tuple[int | None, str]:
    if ctx.memory_budget is not None:
        where = "simulated device" if device.type == "cpu" else str(device)
        return ctx.memory_budget, f"the {_mib(ctx.memory_budget)} budget ({where})"
    if device.type == "cuda":
        if not crashed:
            raise SkipCheck(f"one step ran on {device} without running out of memory")
        free, _total = torch.cuda.mem_get_info(device)
        usable = free + torch.cuda.memory_reserved(device)  # what this process holds is usable by training
        return usable, f"the {_mib(usable)} {device} can give this process"
    if crashed:  # out of host memory
        available = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        return available, f"the {_mib(available)} of free host memory"
    return None, ""


class _Sampler:
    """Measures steps of one model copy at chosen batch sizes (repeating the first batch's samples)."""

    def __init__(self, ctx: Context, device: torch.device):
        self.ctx = ctx
        self.device = device
        self.batch = ctx.first_batch()
        pair = ctx.pair(self.batch)
        # targets are batch-first even when inputs are not (sequence-first RNN inputs)
        self.full = D.batch_len(pair[1]) if pair and D.batch_len(pair[1]) else D.batch_len(self.batch)
        self.model = ctx.fresh_model()
        self.optimizer = ctx.optimizer_for(self.model)
        self.measured: dict[int, StepMemory] = {}
        self.failed: set[int] = set()  # sizes that ran out of real memory
        self.step_seconds = 0.0  # of the largest size measured, to stay within the time budget

    def measure(self, size: int) -> StepMemory | None:
        if size in self.measured or size in self.failed:
            return self.measured.get(size)
        outside = "step" if self.ctx.setup.step is not None else "loss"
        started = time.monotonic()
        try:
            result = measure_step(self.model, self.optimizer, _resize(self.batch, size, self.full),
                                  lambda m, b: self.ctx.loss_of(m, b)[0],
                                  batch_size=size, device=self.device, outside=outside)
        except Exception as exc:
            info = classify(exc, "step")
            if info.kind != "memory":
                raise SkipCheck(f"the training step fails at batch {size}: {info.summary}") from exc
            traceback.clear_frames(exc.__traceback__)  # frees the failed step's tensors
            self.optimizer.zero_grad(set_to_none=True)
            if self.device.type == "cuda":
                torch.cuda.empty_cache()
            self.failed.add(size)
            return None
        self.step_seconds = max(self.step_seconds, time.monotonic() - started)
        self.measured[size] = result
        return result

    def affordable(self, steps: int = 2) -> bool:
        return self.ctx.budget.remaining() > 2 * steps * self.step_seconds

    def fit_model(self, crashed: bool) -> PeakModel | None:
        """Measure two batch sizes (the user's and half of it, or the largest that run) and fit the growth."""
        if crashed:
            self.failed.add(self.full)
        size = self.full if not crashed else max(1, self.full // 2)
        while self.measure(size) is None:  # real memory ran out: halve until a step runs
            if size == 1:
                return None
            size //= 2
        other = size // 2 if size > 1 else 2
        if not self.affordable(1) or self.measure(other) is None:
            other = size  # no time for a second size, or 2 ran out of memory where 1 did not: proportional growth
        small, large = sorted((self.measured[size], self.measured[other]), key=lambda m: m.batch_size)
        return PeakModel(small, large)

    def peak(self, size: int) -> float:
        return math.inf if size in self.failed else self.measured[size].peak

    def bracket(self, budget: float) -> tuple[int, int | None]:
        """The largest measured size that fits (0: none) and the smallest that does not (None: none)."""
        sizes = sorted(set(self.measured) | self.failed)
        fitting = [s for s in sizes if self.peak(s) <= budget]
        over = [s for s in sizes if self.peak(s) > budget]
        return (fitting[-1] if fitting else 0), (over[0] if over else None)

    def largest_batch(self, budget: float, model: PeakModel) -> tuple[int, bool]:
        """The largest batch size measured to fit ``budget``, and whether the next size was measured not to.

        The growth model proposes a size; it and its neighbour are measured. Where a measurement
        contradicts the model (a real out-of-memory below the budget), the bracket is bisected instead.
        """
        for _ in range(MAX_REFINEMENTS):
            lo, hi = self.bracket(budget)
            if hi == lo + 1 or not self.affordable():
                break
            proposed = self._model_near(lo, hi, model).largest_batch(budget)
            if lo < proposed < (hi or math.inf):
                guess, neighbour = proposed, True
            elif proposed == lo:
                guess, neighbour = lo + 1, False  # the model says lo is the largest: confirm lo + 1 is over
            else:
                guess, neighbour = ((lo + hi) // 2 if hi is not None else 2 * lo), False
            fits = self.measure(guess) is not None and self.peak(guess) <= budget
            if neighbour and (fits or guess > 1):  # sizes already measured come from the cache
                self.measure(guess + 1 if fits else guess - 1)
        lo, hi = self.bracket(budget)
        return lo, hi == lo + 1

    def _model_near(self, lo: int, hi: int | None, fallback: PeakModel) -> PeakModel:
        """The growth fitted on the two measured sizes nearest the budget's crossing."""
        anchors = [s for s in (lo, hi) if s]
        nearest = sorted(self.measured, key=lambda s: min(abs(s - a) for a in anchors))[:2]
        if len(nearest) < 2:
            return fallback
        small, large = sorted(nearest)
        return PeakModel(self.measured[small], self.measured[large])


def _resize(batch: Any, size: int, full: int) -> Any:
    """The batch with ``size`` samples: a prefix of it, or its samples repeated."""
    index = torch.arange(size) % full

    def pick(t: Any) -> Any:
        if isinstance(t, torch.Tensor) and t.ndim and t.shape[0] == full:
            return t[index.to(t.device)]
        return t

    return D.map_tensors(pick, batch)


# ----- the report ---------------------------------------------------------------------------------------
@dataclass
class Remedy:
    key: str
    saving: float  # bytes off the peak at the user's batch size
    peak: float
    fits: bool
    text: str


def _report(ctx: Context, sampler: _Sampler, model: PeakModel, budget: int, budget_source: str,
            largest: int, verified: bool, crashed: bool, source: str) -> None:
    full = sampler.full
    parts = model.parts(full)
    measured = sampler.measured.get(full)
    peak = measured.peak if measured is not None else model.peak(full)
    acts = model.activations(full)
    types = {f"model.{p}" if p else "model": type(m).__name__ for p, m in sampler.model.named_modules()}
    heaviest = sorted(((p, b) for p, b in acts.items() if b > 0), key=lambda pb: -pb[1])[:5]
    consumers = ", ".join(f"{p} ({types.get(p, 'outside the model')}) {_mib(b)}" for p, b in heaviest[:3])
    optimizer = model.large.optimizer
    how = "measured" if measured is not None else "estimated from smaller batches"
    opening = f"One training step at batch {full} "
    if not crashed:
        opening += f"needs {_mib(peak)} at its peak ({how}), more than {budget_source}."
    elif peak > budget:
        opening += (f"ran out of memory{f' (at {source})' if source else ''}: it needs about {_mib(peak)} ({how}), "
                    f"more than {budget_source}.")
    else:
        opening += (f"ran out of memory{f' (at {source})' if source else ''}, although the growth measured on smaller "
                    f"batches predicts {_mib(peak)}, within {budget_source}: other tensors, other processes or "
                    "fragmentation hold the rest.")
    breakdown = (f"Breakdown: activations saved for backward {_mib(parts['activations'])}"
                 + (f" (largest: {consumers})" if consumers else "")
                 + f", parameters {_mib(parts['parameters'] + parts['buffers'])}, "
                 f"gradients {_mib(parts['gradients'])}, optimizer state ({optimizer}) {_mib(parts['optimizer_state'])}, the batch {_mib(parts['inputs'])}, "
                 f"temporaries {_mib(max(parts['transient'], parts['step_transient']))}.")
    per_sample = model.bytes_per_sample
    if largest == 0:
        fit = f"Even a batch of 1 does not fit: the fixed part alone is about {_mib(model.peak(0))}."
    else:
        if verified:
            above = "out of memory" if largest + 1 in sampler.failed else _mib(sampler.peak(largest + 1))
            checked = f"measured: {_mib(sampler.peak(largest))} at {largest}, {above} at {largest + 1}"
        else:
            checked = f"measured {_mib(sampler.peak(largest))}; the time budget left {largest + 1} unmeasured"
        fit = (f"Memory grows by {_mib(per_sample)} per sample; the largest batch that fits is {largest} ({checked}).")
    # After a real out-of-memory below the budget, only what was measured to run is known to fit.
    limit = budget if peak > budget or not largest else sampler.peak(largest)
    remedies = sorted(_remedies(sampler, model, limit, largest, peak), key=lambda r: -r.saving)
    ctx.emit(
        "RUN004",
        " ".join([opening, breakdown, fit]),
        location=next((p for p, _ in heaviest if p.startswith("model")), "model"),
        evidence={
            "device": str(sampler.device),
            "budget_bytes": int(budget),
            "batch_size": full,
            "peak_bytes": int(peak),
            "peak_measured": measured is not None,
            "parameters_bytes": int(parts["parameters"]),
            "buffers_bytes": int(parts["buffers"]),
            "gradients_bytes": int(parts["gradients"]),
            "optimizer": optimizer,
            "optimizer_state_bytes": int(parts["optimizer_state"]),
            "inputs_bytes": int(parts["inputs"]),
            "activations_bytes": int(parts["activations"]),
            "activations_by_module": {p: int(b) for p, b in heaviest},
            "transient_bytes": int(parts["transient"]),
            "step_transient_bytes": int(parts["step_transient"]),
            "bytes_per_sample": int(per_sample),
            "fixed_bytes": int(model.peak(0)),
            "largest_batch": largest,
            "largest_batch_verified": verified,
            "measured_peaks": {s: int(sampler.peak(s)) if s in sampler.measured else "out of memory"
                               for s in sorted(set(sampler.measured) | sampler.failed)},
            "remedies": [{"remedy": r.key, "saving_bytes": int(r.saving), "peak_bytes": int(r.peak),
                          "fits": r.fits} for r in remedies],
        },
        suggestions=[r.text for r in remedies],
    )


def _report_nothing_fits(ctx: Context, sampler: _Sampler, budget: int, budget_source: str, source: str) -> None:
    """Not even one sample runs: only the fixed part (weights, gradients, optimizer state) can be shown."""
    weights = sum(p.numel() * p.element_size() for p in sampler.model.parameters())
    trainable = sum(p.numel() * p.element_size() for p in sampler.model.parameters() if p.requires_grad)
    ctx.emit(
        "RUN004",
        f"Even a batch of 1 runs out of memory{f' (at {source})' if source else ''}, with {budget_source}: the "
        f"parameters alone take {_mib(weights)}, their gradients {_mib(trainable)}, and an Adam-like optimizer "
        f"twice that again.",
        location="model",
        evidence={"device": str(sampler.device), "budget_bytes": int(budget), "batch_size": sampler.full,
                  "parameters_bytes": weights, "gradients_bytes": trainable, "largest_batch": 0,
                  "largest_batch_verified": True},
        suggestions=["Freeze the parts you do not need to train (`requires_grad_(False)`): no gradients or "
                     "optimizer state for them.",
                     "Keep the weights in bf16, use an 8-bit or stateless optimizer, or shard/offload the model "
                     "(FSDP, DeepSpeed ZeRO) across devices."],
    )


def _remedies(sampler: _Sampler, model: PeakModel, budget: float, largest: int, peak: float) -> list[Remedy]:
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
            f"Mixed precision stores most activations in 16 bits (measured: {_mib(half)} instead of "
            f"{_mib(parts['activations'])}): `with torch.autocast('{sampler.device.type}', dtype=torch.bfloat16):` "
            "around the forward and loss (float16 on older GPUs, with `torch.amp.GradScaler`).")
    _optimizer_remedy(sampler, model, parts, add)
    _freezing_remedy(sampler, model, parts, add)
    return found


def _mixed_precision_activations(sampler: _Sampler, model: PeakModel) -> float | None:
    """Activations saved under autocast at the user's batch size, from one measured forward pass (None: fails)."""
    size = model.large.batch_size
    half = torch.bfloat16 if sampler.device.type != "cuda" or torch.cuda.is_bf16_supported() else torch.float16
    try:
        with torch.autocast(sampler.device.type, dtype=half):
            saved = forward_saved_bytes(sampler.model, _resize(sampler.batch, size, sampler.full),
                                        lambda m, b: sampler.ctx.loss_of(m, b)[0])
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


def _optimizer_remedy(sampler: _Sampler, model: PeakModel, parts: dict[str, float], add: Any) -> None:
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


def _freezing_remedy(sampler: _Sampler, model: PeakModel, parts: dict[str, float], add: Any) -> None:
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
