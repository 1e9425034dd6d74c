"""Out of memory (RUN004): does one training step fit the device, where does its memory go, what batch
fits, and what would save the most.

The budget is ``--memory SIZE`` / ``Setup(memory_budget=...)`` for the target device (``--device`` /
``Setup(device=...)``, by default where the model is; it need not be on this machine); on a GPU the
memory this process can use is the default, and an out-of-memory crash of step 1 (left unreported by
``one-training-step``) is analysed here instead of ending the run. Steps are traced with fake tensors
(``probes/fake_memory.py``): nothing is allocated, so any batch size is instant. The user's batch and
half of it give the growth per sample; the largest batch that fits is extrapolated from it and then
traced, with the next size up. What a trace cannot see on CUDA (context, workspaces, fragmentation) is a
stated margin. A step that fake tensors cannot trace (a data-dependent op, a custom op) is measured
instead, by running it, and the finding says so.
"""
from __future__ import annotations

import math
import os
import time
import traceback
from typing import Any

import torch

from nndoctor import data as D
from nndoctor.checks import SkipCheck, check
from nndoctor.checks import run as _run  # noqa: F401  registers one-training-step first: its ctx.run_error is read here
from nndoctor.checks.memory_remedies import Remedy, _mib, _micro_batch, _remedies  # noqa: F401  _micro_batch: tests
from nndoctor.context import Context
from nndoctor.probes.errors import classify
from nndoctor.probes.fake_memory import FakeStep, Margin, cuda_margin
from nndoctor.probes.memory import PeakModel, StepMemory, forward_saved_bytes, measure_step

MAX_REFINEMENTS = 8  # measurement rounds to pin the largest batch down (each measures one or two sizes)


@check("memory-fit", step="run", codes=("RUN004",), needs_run=False)
def memory_fit(ctx: Context) -> None:
    """RUN004 when one step at the user's batch size needs more memory than the device (or budget) has."""
    crashed = ctx.run_error is not None and classify(ctx.run_error, "step").kind == "memory"
    if ctx.run_error is not None and not crashed:
        raise SkipCheck("the training step failed for another reason (reported above)")
    device = ctx.target_device
    budget, budget_source = _budget(ctx, device, crashed)
    if budget is None:
        raise SkipCheck("no memory budget: give `--memory SIZE` or Setup(memory_budget=...) to simulate a device")
    source = ""
    if crashed:  # the crashed step's tensors are kept alive by its traceback's frames: free them first
        source = classify(ctx.run_error, "step").source
        traceback.clear_frames(ctx.run_error.__traceback__)
        if device.type == "cuda" and torch.cuda.is_available():
            torch.cuda.empty_cache()
    # A budget read from the device excludes its CUDA context already; a stated size is the whole device.
    margin = cuda_margin(device, context_in_budget=ctx.memory_budget is not None)
    sampler = _Sampler(ctx, device)
    if sampler.full < 1:
        raise SkipCheck("cannot tell the batch size of the first batch")
    model = sampler.fit_model(crashed)
    if model is None:
        _report_nothing_fits(ctx, sampler, budget, budget_source, source)
        _stop_later_steps(ctx, crashed, f"one training step does not fit {budget_source} (RUN004): fix that first")
        return
    full = sampler.full
    at_full = sampler.measured.get(full)
    peak = at_full.peak if at_full is not None else model.peak(full)
    ctx.extras["memory"] = {"budget_bytes": budget, "batch_size": full, "peak_bytes": int(peak),
                            "margin_bytes": int(margin.of(peak)), "bytes_per_sample": int(model.bytes_per_sample),
                            "method": sampler.method, **({"fallback": sampler.fallback} if sampler.fallback else {})}
    usable = margin.usable(budget)
    if not crashed and peak <= usable:
        return
    largest, verified = sampler.largest_batch(usable, model)
    confirmed = sampler.confirm(largest)
    _report(ctx, sampler, model, budget, budget_source, largest, verified, crashed, source, margin, confirmed)
    again = f", or check again at batch {largest}" if largest else ""
    _stop_later_steps(ctx, crashed, f"one training step at batch {full} does not fit {budget_source} (RUN004): "
                      f"fix that first{again}")


def _stop_later_steps(ctx: Context, crashed: bool, reason: str) -> None:
    """A step that does not fit the target device does not run there: the later steps that run the model
    wait for the fix (as after a crash: the playbook skips them with ``reason``), rather than spend minutes
    on a run the device cannot do."""
    if not crashed:  # a crash has stopped them already
        ctx.not_run_reason = reason


def _budget(ctx: Context, device: torch.device, crashed: bool) -> tuple[int | None, str]:
    if ctx.memory_budget is not None:
        where = "simulated device" if device.type == "cpu" else str(device)
        return ctx.memory_budget, f"the {_mib(ctx.memory_budget)} budget ({where})"
    if device.type == "cuda" and torch.cuda.is_available():
        if not crashed:
            raise SkipCheck(f"one step ran on {device} without running out of memory")
        free, total = torch.cuda.mem_get_info(device)
        usable = free + torch.cuda.memory_reserved(device)  # what this process holds is usable by training
        fraction = getattr(torch.cuda, "get_per_process_memory_fraction", lambda _d: 1.0)(device)
        if fraction < 1.0:  # a cap set by the user or a scheduler: the allocator fails there, not at the card's size
            usable = min(usable, int(fraction * total))
        return usable, f"the {_mib(usable)} {device} can give this process"
    if crashed and device.type == "cpu":  # out of host memory
        available = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        return available, f"the {_mib(available)} of free host memory"
    return None, ""


class _Sampler:
    """Traces (or, as a fallback, measures) steps of one model copy at chosen batch sizes.

    Traced steps run on fake tensors shaped like the first batch; measured ones repeat its samples.
    """

    def __init__(self, ctx: Context, device: torch.device):
        self.ctx = ctx
        self.device = device
        self.batch = ctx.first_batch()
        pair = ctx.pair(self.batch)
        # targets are batch-first even when inputs are not (sequence-first RNN inputs)
        self.full = D.batch_len(pair[1]) if pair and D.batch_len(pair[1]) else D.batch_len(self.batch)
        self.measured: dict[int, StepMemory] = {}
        self.failed: set[int] = set()  # sizes that ran out of real memory
        self.step_seconds = 0.0  # of the largest size measured, to stay within the time budget
        self.fallback = ""  # why steps are measured rather than traced
        self.fake: FakeStep | None = None
        self.model = ctx.fresh_model()
        try:
            self.fake = FakeStep(self.model, ctx.optimizer_for, device)
            self.optimizer = self.fake.optimizer
        except Exception as exc:  # a parameter type fake tensors do not support: run steps instead
            self._measure_instead(exc)

    @property
    def method(self) -> str:
        return "fake-trace" if self.fake is not None else "measured"

    @property
    def how(self) -> str:
        if self.fake is None:
            return "measured"
        return "traced with fake tensors" + (f", {self.fake.kernels}" if self.fake.kernels else "")

    def _measure_instead(self, exc: BaseException) -> None:
        self.fallback = (f"fake tensors cannot trace this step ({type(exc).__name__}: {str(exc).strip()[:160]}); "
                         f"steps were run and measured instead")
        self.fake = None
        if self.device.type == "cuda" and not torch.cuda.is_available():
            self.device = self.ctx.device  # no such device here: measure where the model is
            self.fallback += f" on {self.device}"
        self.model = self.ctx.fresh_model()
        self.optimizer = self.ctx.optimizer_for(self.model)

    def _loss(self, model: Any, batch: Any) -> Any:
        return self.ctx.loss_of(model, batch)[0]

    def _step(self, size: int) -> StepMemory:
        outside = "step" if self.ctx.setup.step is not None else "loss"
        if self.fake is not None:
            return self.fake.trace(self.batch, size, self.full, self._loss, outside)
        return measure_step(self.model, self.optimizer, _resize(self.batch, size, self.full), self._loss,
                            batch_size=size, device=self.device, outside=outside)

    def saved_bytes(self, size: int, autocast: bool = False) -> int:
        """Bytes saved for backward by one forward pass and loss at ``size`` samples (under autocast: 16-bit)."""
        kind = self.fake.traced_on.type if self.fake is not None else self.device.type
        half = torch.float16 if kind == "cuda" and not torch.cuda.is_bf16_supported() else torch.bfloat16
        with torch.autocast(kind, dtype=half, enabled=autocast):
            if self.fake is not None:
                return self.fake.saved_bytes(self.batch, size, self.full, self._loss)
            return forward_saved_bytes(self.model, _resize(self.batch, size, self.full), self._loss)

    def confirm(self, size: int) -> int | None:
        """On a CUDA device that is here, the allocator's peak of one real step at ``size`` (traced to fit)."""
        if self.fake is None or self.device.type != "cuda" or not torch.cuda.is_available() or size < 1:
            return None
        model = self.ctx.fresh_model().to(self.device)
        try:
            step = measure_step(model, self.ctx.optimizer_for(model), D.to_device(_resize(self.batch, size, self.full),
                                self.device), self._loss, batch_size=size, device=self.device)
        except Exception:  # out of memory after all, or a step that fails here: no confirmation
            return None
        finally:
            del model
            torch.cuda.empty_cache()
        return int(step.peak)

    def measure(self, size: int) -> StepMemory | None:
        if size in self.measured or size in self.failed:
            return self.measured.get(size)
        started = time.monotonic()
        try:
            result = self._step(size)
        except Exception as exc:
            info = classify(exc, "step")
            if info.kind != "memory" and self.fake is not None and not self.measured:
                self._measure_instead(exc)
                return self.measure(size)
            if info.kind != "memory":
                raise SkipCheck(f"the training step fails at batch {size}: {info.summary}") from exc
            traceback.clear_frames(exc.__traceback__)  # frees the failed step's tensors
            self.optimizer.zero_grad(set_to_none=True)
            if self.device.type == "cuda" and torch.cuda.is_available():
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

def _report(ctx: Context, sampler: _Sampler, model: PeakModel, budget: int, budget_source: str,
            largest: int, verified: bool, crashed: bool, source: str, margin: Margin,
            confirmed: int | None = None) -> None:
    full = sampler.full
    usable = margin.usable(budget)
    parts = model.parts(full)
    measured = sampler.measured.get(full)
    peak = measured.peak if measured is not None else model.peak(full)
    acts = model.activations(full)
    types = {f"model.{p}" if p else "model": type(m).__name__ for p, m in sampler.model.named_modules()}
    heaviest = sorted(((p, b) for p, b in acts.items() if b > 0), key=lambda pb: -pb[1])[:5]
    consumers = ", ".join(f"{p} ({types.get(p, 'outside the model')}) {_mib(b)}" for p, b in heaviest[:3])
    optimizer = model.large.optimizer
    how = sampler.how if measured is not None else "estimated from smaller batches"
    beyond = f" plus a margin of {_mib(margin.of(peak))} for what a trace cannot see" if margin.of(peak) else ""
    opening = f"One training step at batch {full} "
    if not crashed:
        opening += f"needs {_mib(peak)} at its peak ({how}){beyond}, more than {budget_source}."
    elif peak > usable:
        opening += (f"ran out of memory{f' (at {source})' if source else ''}: it needs about {_mib(peak)} ({how}){beyond}, "
                    f"more than {budget_source}.")
    else:
        opening += (f"ran out of memory{f' (at {source})' if source else ''}, although the growth measured on smaller "
                    f"batches predicts {_mib(peak)}, within {budget_source}: other tensors, other processes or "
                    "fragmentation hold the rest.")
    breakdown = (f"Breakdown: activations saved for backward {_mib(parts['activations'])}"
                 + (f" (largest: {consumers})" if consumers else "")
                 + f", parameters {_mib(parts['parameters'] + parts['buffers'])}, "
                 f"gradients {_mib(parts['gradients'])}, optimizer state ({optimizer}) {_mib(parts['optimizer_state'])}, the batch {_mib(parts['inputs'])}, "
                 f"temporaries {_mib(max(parts['transient'], parts['step_transient']))}"
                 + (f"; margin for what a trace cannot see ({margin.text}) {_mib(margin.of(peak))}." if margin.text
                    else "."))
    per_sample = model.bytes_per_sample
    if largest == 0:
        fit = f"Even a batch of 1 does not fit: the fixed part alone is about {_mib(model.peak(0))}."
    else:
        if verified:
            above = "out of memory" if largest + 1 in sampler.failed else _mib(sampler.peak(largest + 1))
            checked = f"{sampler.how}: {_mib(sampler.peak(largest))} at {largest}, {above} at {largest + 1}"
            checked += ", each plus the margin" if margin.text else ""
        else:
            checked = f"{sampler.how}: {_mib(sampler.peak(largest))}; the time budget left {largest + 1} unchecked"
        fit = (f"Memory grows by {_mib(per_sample)} per sample; the largest batch that fits is {largest} ({checked}).")
        if confirmed is not None:
            fit += f" One real step at {largest} on {sampler.device} peaked at {_mib(confirmed)}."
    # After a real out-of-memory below the budget, only what was measured to run is known to fit.
    limit = usable if peak > usable or not largest else sampler.peak(largest)
    remedies = sorted(_remedies(sampler, model, limit, largest, peak), key=lambda r: -r.saving)
    ctx.emit(
        "RUN004",
        " ".join([opening, breakdown, fit] + ([f"({sampler.fallback}.)"] if sampler.fallback else [])),
        location=next((p for p, _ in heaviest if p.startswith("model")), "model"),
        evidence={
            "device": str(sampler.device),
            "method": sampler.method,
            **({"fallback": sampler.fallback} if sampler.fallback else {}),
            **({"traced_with": sampler.fake.kernels} if sampler.fake is not None and sampler.fake.kernels else {}),
            "budget_bytes": int(budget),
            "margin_bytes": int(margin.of(peak)),
            "margin": margin.text,
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
            **({"confirmed_peak_bytes": confirmed} if confirmed is not None else {}),
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
        evidence={"device": str(sampler.device), "method": sampler.method, "budget_bytes": int(budget),
                  "batch_size": sampler.full,
                  "parameters_bytes": weights, "gradients_bytes": trainable, "largest_batch": 0,
                  "largest_batch_verified": True},
        suggestions=["Freeze the parts you do not need to train (`requires_grad_(False)`): no gradients or "
                     "optimizer state for them.",
                     "Keep the weights in bf16, use an 8-bit or stateless optimizer, or shard/offload the model "
                     "(FSDP, DeepSpeed ZeRO) across devices."],
    )
