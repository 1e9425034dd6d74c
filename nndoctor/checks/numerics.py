"""Step 2, numerical instability: where the first NaN/Inf is born (NUM001 forward, NUM002 backward),
fragile formulations that have not overflowed yet (NUM003), dead ReLU units (NUM004) and saturated
sigmoid/tanh units (NUM005).

The first NaN is found cheaply first: a few training steps on the first batch that read only the loss
and the gradient norm (one host transfer each). Only when one of them is not finite is that step
replayed with op-level instrumentation (probes/nonfinite.py), so a healthy model pays nothing for it.
"""
from __future__ import annotations

import math
import time
import warnings
from typing import Any, Callable

import torch

from nndoctor import data as D
from nndoctor.checks import SkipCheck, check
from nndoctor.checks.loss import traced_pass
from nndoctor.context import Context
from nndoctor.probes.activation_stats import ActivationStats, SiteStats
from nndoctor.probes.nonfinite import Birth, FirstNonFinite, GuardResult, guarded_steps, replay_to
from nndoctor.probes.op_trace import Risk
from nndoctor.probes.stable_forms import Harm, measure_harm

# ----- NUM001 / NUM002 -------------------------------------------------------------------------------

GUARD_STEPS = 3  # NaN from a bad op shows in the first step; from a growing overflow within a few

# Why an op makes NaN/Inf, and the guard that avoids it.
_OP_HINTS = {
    "log": ("log of 0 is -inf and of a negative number NaN",
            "`torch.log(x.clamp_min(1e-8))`, or `torch.log1p(x)` for x >= 0"),
    "log2": ("log of 0 is -inf and of a negative number NaN", "`x.clamp_min(1e-8)` before the log"),
    "log10": ("log of 0 is -inf and of a negative number NaN", "`x.clamp_min(1e-8)` before the log"),
    "sqrt": ("sqrt of a negative number is NaN, and its derivative at 0 is infinite",
             "`torch.sqrt(x + 1e-12)` (or `x.clamp_min(1e-12)`), or `torch.linalg.vector_norm` for norms"),
    "rsqrt": ("rsqrt of 0 is inf", "`torch.rsqrt(x + 1e-6)`"),
    "pow": ("a fractional power of 0 has an infinite derivative, of a negative number NaN",
            "add an epsilon to the base"),
    "exp": ("exp overflows to inf above 88 in float32", "subtract the maximum first, or use `logsumexp`/`log_softmax`"),
    "div": ("division by 0 gives inf, and 0/0 NaN", "add an epsilon to the denominator (`x / (d + 1e-8)`)"),
    "acos": ("acos outside [-1, 1] is NaN and its derivative at +-1 infinite", "`x.clamp(-1 + 1e-6, 1 - 1e-6)`"),
    "asin": ("asin outside [-1, 1] is NaN and its derivative at +-1 infinite", "`x.clamp(-1 + 1e-6, 1 - 1e-6)`"),
    "softmax": ("a row of all -inf (fully masked) gives 0/0", "make sure no row is masked entirely"),
}
_DIVISION_NAMES = {"__truediv__", "__rtruediv__", "true_divide", "divide", "div_", "__itruediv__"}


@check("first-non-finite", step="bugs", codes=("NUM001", "NUM002"))
def first_non_finite(ctx: Context) -> None:
    """A few training steps on the first batch; if the loss or the gradients stop being finite, replay
    that step with fine instrumentation and report where the first NaN/Inf was born."""
    batch = ctx.first_batch()
    if any(t.is_floating_point() and not bool(torch.isfinite(t).all()) for t in D.tensors_in(batch)):
        raise SkipCheck("the first batch itself holds NaN/Inf (DAT002 reports it)")
    model = ctx.fresh_model().train()
    bad = _non_finite_parameters(model)
    if bad:
        _report_bad_parameters(ctx, bad)
        return
    deadline = time.monotonic() + min(1.0, 0.02 * ctx.budget.remaining())  # at least one step, however slow

    def step_loss(m: torch.nn.Module) -> torch.Tensor:
        return ctx.loss_of(m, batch)[0]

    with torch.random.fork_rng(devices=[]), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.manual_seed(ctx.seed)
        guard = guarded_steps(model, ctx.optimizer_for(model), step_loss, GUARD_STEPS,
                              keep_going=lambda: time.monotonic() < deadline)
        if guard.trip_step is None:
            return
        torch.manual_seed(ctx.seed)  # the replay draws the same random numbers (dropout) as the guard
        model = ctx.fresh_model().train()
        optimizer = ctx.optimizer_for(model)
        replay_to(model, optimizer, step_loss, guard.trip_step)
        _locate(ctx, model, step_loss, guard)


def _non_finite_parameters(model: torch.nn.Module) -> list[str]:
    return [name for name, p in model.named_parameters() if p.is_floating_point() and not bool(torch.isfinite(p).all())]


def _locate(ctx: Context, model: torch.nn.Module, step_loss: Callable[[torch.nn.Module], torch.Tensor],
            guard: GuardResult) -> None:
    """Replay the step that went wrong with op-level instrumentation and report where NaN/Inf was born."""
    step = guard.trip_step
    bad = _non_finite_parameters(model)
    if bad:  # finite gradients, but the update made NaN/Inf (a huge learning rate, Adam with eps=0)
        _report_bad_update(ctx, bad, guard)
        return
    with FirstNonFinite(model) as probe:
        loss = step_loss(model)
    if guard.trip_phase == "forward":
        birth = probe.birth_of(loss)
        if birth is None:
            raise SkipCheck(f"the replayed step {step + 1} did not reproduce the non-finite loss"
                            if probe.entered is None else "NaN entered the forward pass from outside the traced ops")
        _report_forward(ctx, birth, guard)
        return
    with probe.watch_backward(loss):
        loss.backward()
    if probe.backward_birth is None:
        raise SkipCheck(f"the replayed backward of step {step + 1} did not reproduce the non-finite gradient")
    _report_backward(ctx, probe.backward_birth, guard)


def _report_forward(ctx: Context, birth: Birth, guard: GuardResult) -> None:
    op = _op_name(birth.op)
    made = _made(birth.produced)
    inputs = "; ".join(_range_words(r) for r in birth.inputs[:3]) or "no tensor inputs"
    cause, fix = _OP_HINTS.get(op, ("", "check the range of its inputs"))
    message = (f"The first non-finite value of training step {guard.trip_step + 1} is born in the forward pass: "
               f"`{op}` in {birth.site.describe()} made {made} from inputs {inputs}.")
    if cause:
        message += f" ({cause}.)"
    message += _history(guard)
    ctx.emit("NUM001", message, location=birth.site.location(_outside(ctx)),
             evidence={"phase": "forward", "op": op, "step": guard.trip_step + 1, "inputs": birth.inputs,
                       "output": birth.produced, "source": birth.site.source, "source_line": birth.site.source_line,
                       "losses": guard.losses},
             suggestions=_suggestions(fix, guard))


def _report_backward(ctx: Context, birth: Birth, guard: GuardResult) -> None:
    op = _op_name(birth.op)
    cause, fix = _OP_HINTS.get(op, ("", "check where its derivative is infinite for these inputs"))
    inputs = "; ".join(_range_words(r) for r in birth.inputs[:3]) or "inputs not recorded"
    came = birth.incoming
    incoming = (f" from a finite incoming gradient (in [{came['min']:.3g}, {came['max']:.3g}])"
                if came and came["min"] is not None else "")
    message = (f"Training step {guard.trip_step + 1} has a finite loss ({guard.losses[-1]:.4g}) but its backward pass "
               f"makes {_made(birth.produced)} gradient values{incoming}: in {birth.node}, the derivative of `{op}` in "
               f"{birth.site.describe()}, whose forward inputs were {inputs}.")
    if cause:
        message += f" ({cause}.)"
    ctx.emit("NUM002", message, location=birth.site.location(_outside(ctx)),
             evidence={"phase": "backward", "op": op, "node": birth.node, "step": guard.trip_step + 1,
                       "forward_inputs": birth.inputs, "gradient": birth.produced, "incoming_gradient": birth.incoming,
                       "source": birth.site.source, "source_line": birth.site.source_line},
             suggestions=_suggestions(fix, guard))


def _report_bad_parameters(ctx: Context, names: list[str]) -> None:
    ctx.emit("NUM001", f"The model's parameters already hold NaN/Inf before any training: "
                       f"{', '.join('model.' + n for n in names[:5])}"
                       f"{f' and {len(names) - 5} more' if len(names) > 5 else ''}. Every forward pass through them is "
                       "non-finite.",
             location=f"model.{names[0].rpartition('.')[0]}".rstrip("."), evidence={"parameters": names},
             suggestions=["Re-initialise those parameters, or load a checkpoint saved before training diverged."])


def _report_bad_update(ctx: Context, names: list[str], guard: GuardResult) -> None:
    step = guard.trip_step
    ctx.emit("NUM002", f"The gradients of training step {step} were finite (norm {guard.grad_norms[step - 1]:.3g}), "
                       "but the optimizer's update made parameters NaN/Inf: "
                       f"{', '.join('model.' + n for n in names[:5])}.{_history(guard)}",
             location="optimizer", evidence={"parameters": names, "step": step, "losses": guard.losses,
                                             "grad_norms": guard.grad_norms},
             suggestions=["Check the optimizer's settings: a learning rate of inf or huge, or `eps=0` in Adam "
                          "(0/0 for parameters whose gradient is 0).",
                          "Clip gradients (`torch.nn.utils.clip_grad_norm_`) and lower the learning rate."])


def _history(guard: GuardResult) -> str:
    if len(guard.losses) < 2:
        return ""
    shown = ", ".join(f"{v:.3g}" for v in guard.losses)
    return f" The loss over the steps on one batch: {shown}."


def _suggestions(fix: str, guard: GuardResult) -> list[str]:
    out = [f"Guard the op: {fix}."]
    finite = [v for v in guard.losses if math.isfinite(v)]
    if len(finite) >= 2 and finite[-1] > 10 * abs(finite[0]):
        out.append("The loss grew before it broke: the learning rate may be too high (OFB002).")
    return out


def _op_name(op: str) -> str:
    return "div" if op in _DIVISION_NAMES else op.rstrip("_")


def _made(r: dict[str, Any]) -> str:
    parts = [f"{r['nan']} NaN" if r["nan"] else "", f"{r['inf']} Inf" if r["inf"] else ""]
    return " and ".join(p for p in parts if p) + f" (of {r['numel']})"


def _range_words(r: dict[str, Any]) -> str:
    if r["min"] is None:
        return f"shape {tuple(r['shape'])}, all non-finite"
    words = f"shape {tuple(r['shape'])} in [{r['min']:.4g}, {r['max']:.4g}]"
    extras = [f"{r['zeros']} zeros" if r["zeros"] else "", f"{r['negative']} negative" if r["negative"] else "",
              f"{r['nan']} NaN" if r["nan"] else "", f"{r['inf']} Inf" if r["inf"] else ""]
    extras = [e for e in extras if e]
    return words + (f" ({', '.join(extras)})" if extras else "")


def _outside(ctx: Context) -> str:
    return "loss_fn" if ctx.setup.step is None else "step"


# ----- NUM003 -------------------------------------------------------------------------------------


# Harm on this program's values: the stable formulation changes the loss or the gradients beyond rounding
# (float32 rounding of the two forms differs by ~1e-7; a saturated sigmoid under BCELoss by orders more).
LOSS_HARM, GRADIENT_HARM = 1e-3, 1e-2
_MEASURED = ("log-of-probabilities", "bce-of-sigmoid")  # kinds StableForms swaps for their stable form


@check("unstable-formulations", step="bugs", codes=("NUM003",))
def unstable_formulations(ctx: Context) -> None:
    """Fragile op sequences in the traced forward and loss: a warning where swapping in the stable form changes
    this program's loss or gradients (measured harm), or a denominator already below 1e-12; else info."""
    trace = traced_pass(ctx).trace
    born = {(f.location) for f in ctx.findings if f.code in ("NUM001", "NUM002")}
    for risk in trace.risks:
        location = risk.site.location(_outside(ctx))
        if location not in born:
            _report_risk(ctx, risk, location)
    for call in trace.losses:
        origin = call.origin
        if call.name == "binary_cross_entropy" and origin is not None and origin.op == "sigmoid":
            severity, words, evidence = _harm(ctx, "bce-of-sigmoid")
            ctx.emit("NUM003",
                     f"`BCELoss` gets the output of a sigmoid from {origin.site.describe()}: once the sigmoid "
                     "saturates, its probability rounds to exactly 0 or 1, BCELoss clamps the log at -100 and the "
                     "gradient vanishes. BCEWithLogitsLoss computes the same loss from the logits, exactly." + words,
                     location=origin.site.location(_outside(ctx)), severity=severity,
                     evidence={"loss": "BCELoss", "activation": "sigmoid", **evidence},
                     suggestions=["Remove the sigmoid and use `nn.BCEWithLogitsLoss()` on the logits (apply the "
                                  "sigmoid only at inference)."])


def _stable_harm(ctx: Context) -> Harm | None:
    """The loss and gradients of one pass on the first batch, as written against the stable forms (once)."""
    def compute() -> Harm | None:
        batch = ctx.first_batch()
        try:
            return measure_harm(ctx.fresh_model, lambda m: ctx.loss_of(m, batch)[0], ctx.seed)
        except Exception:  # noqa: BLE001 - the swap does not fit this program: no measurement
            return None
    return ctx.measure("num:stable_harm", compute)


def _harm(ctx: Context, kind: str) -> tuple[str, str, dict[str, Any]]:
    """(severity, sentence, evidence) of the measured harm of a fragile formulation of ``kind``."""
    if kind == "near-zero-division":  # the denominators measured on this batch are already below 1e-12
        return "warning", "", {}
    harm = _stable_harm(ctx) if kind in _MEASURED else None
    if harm is None:
        return ("info", " On this batch it has not overflowed yet (nothing measured against a stable form): a "
                        "risk, not yet harm.", {})
    evidence = {"harm": {"loss": harm.loss, "stable_loss": harm.stable_loss, "loss_difference": harm.loss_difference,
                         "gradient_difference": harm.gradient_difference, "non_finite": harm.non_finite}}
    numbers = (f"loss {harm.loss:.6g} as written, {harm.stable_loss:.6g} with the stable form; gradients differ by "
               f"{harm.gradient_difference:.2g} of their norm")
    if harm.non_finite or harm.loss_difference > LOSS_HARM or harm.gradient_difference > GRADIENT_HARM:
        return "warning", f" Measured on the first batch: {numbers}.", evidence
    return ("info", f" On the first batch it does no harm yet ({numbers}): a risk once values grow in training.",
            evidence)


def _report_risk(ctx: Context, risk: Risk, location: str) -> None:
    origin = risk.origin
    if risk.kind == "log-of-probabilities":
        if origin.op == "softmax":
            made = ("a softmax written by hand" if origin.hand_written else "a softmax" if origin.site == risk.site
                    else f"the softmax of {origin.site.describe()}")
            message = (f"`{risk.op}` in {risk.site.describe()} takes the log of {made}: log(softmax(x)) is -inf "
                       "as soon as one probability underflows to 0 (logits about 100 apart in float32, 17 in "
                       "float16), and its gradient loses precision long before.")
            fix = "Use `torch.log_softmax(x, dim)` on the logits (or `F.cross_entropy`, which includes it)."
        else:
            inner = "-x" if origin.complement else "x"
            made = "" if origin.site == risk.site else f" ({origin.site.describe()})"
            message = (f"`{risk.op}` in {risk.site.describe()} takes the log of {'1 - ' if origin.complement else ''}"
                       f"a sigmoid output{made}: it is -inf once the sigmoid saturates "
                       "(|x| > 17 in float32) and the gradient vanishes before that.")
            fix = (f"Use `F.logsigmoid({inner})` instead of the log of the sigmoid, or `nn.BCEWithLogitsLoss` on the "
                   "logits for a binary loss.")
    elif risk.kind == "log-of-sum-exp":
        message = (f"`{risk.op}` in {risk.site.describe()} takes the log of a sum of exps: exp overflows above 88 "
                   "in float32, so the result becomes inf for large inputs.")
        fix = "Use `torch.logsumexp(x, dim)`, which subtracts the maximum first."
    elif risk.kind == "hand-written-softmax":
        message = (f"A softmax is written by hand in {risk.site.describe()} as exp(x) / sum(exp(x)): without "
                   "subtracting the maximum it overflows to inf/inf = NaN once a value exceeds 88 (float32).")
        fix = "Use `torch.softmax(x, dim)` (or `log_softmax`), which is stable for any input."
    elif risk.kind == "large-exp":
        message = (f"`exp` in {risk.site.describe()} gets values up to {risk.value:.3g} already before training; "
                   "float32 overflows to inf at 88.7, so a few updates can push it over.")
        fix = "Bound the input (`x.clamp(max=...)`), subtract the maximum, or work in log space (`logsumexp`)."
    else:  # near-zero-division
        message = (f"A division in {risk.site.describe()} has denominators as small as {risk.value:.3g}: the quotient "
                   "is huge or inf, and its gradient worse.")
        fix = "Add an epsilon to the denominator (`x / (d + 1e-8)`) or clamp it (`d.clamp_min(1e-8)`)."
    severity, words, harm = _harm(ctx, risk.kind)
    ctx.emit("NUM003", message + words, location=location, severity=severity,
             evidence={"kind": risk.kind, "op": risk.op, "value": risk.value, "source": risk.site.source,
                       "source_line": risk.site.source_line, **harm},
             suggestions=[fix])


# ----- NUM004 / NUM005 --------------------------------------------------------------------------------

DEAD = 0.5  # share of a layer's units that never activate; a default-initialised layer has a few percent
SATURATED = 0.5  # share of a sigmoid/tanh layer's outputs at its flat ends; default inits have ~0
MIN_UNITS = 8  # smaller layers (output units, gates) are judged by the loss checks instead
SAMPLES = 128  # samples to look at: a unit that fires on none of them is dead for the data


@check("activation-health", step="bugs", codes=("NUM004", "NUM005"))
def activation_health(ctx: Context) -> None:
    """Dead ReLU units and saturated sigmoid/tanh units of the untrained model, over a few batches."""
    model = ctx.fresh_model().train()  # batch-norm normalises with batch statistics, as in training
    seen = 0
    deadline = time.monotonic() + min(1.0, 0.02 * ctx.budget.remaining())  # the first batch, however slow
    with torch.random.fork_rng(devices=[]), torch.no_grad(), warnings.catch_warnings(), \
            ActivationStats(model) as stats:
        warnings.simplefilter("ignore")
        torch.manual_seed(ctx.seed)
        for batch in ctx.batches(limit=8):
            stats.new_pass()
            pair = ctx.pair(batch)
            try:
                if pair is None:
                    ctx.setup.step(model, batch)
                else:
                    ctx.forward(model, pair[0])
            except Exception:  # a later batch the model cannot take is another check's business
                break
            seen += D.batch_len(pair[0] if pair is not None else batch)
            if seen >= SAMPLES or time.monotonic() > deadline:
                break
    if not seen:
        raise SkipCheck("the model did not run on a training batch without gradients")
    sites = [s for s in stats.results() if s.units >= MIN_UNITS]
    if not sites:
        raise SkipCheck("no ReLU, sigmoid or tanh layer with at least 8 units")
    names = [s.site.location(_outside(ctx)) for s in sites]
    names = [f"{n} (call {names[:i].count(n) + 1})" if names.count(n) > 1 else n for i, n in enumerate(names)]
    ctx.extras["activations"] = {"layers": [
        {"name": name, "dead_fraction": s.dead_fraction if s.kind == "relu" else None,
         "saturated_fraction": s.saturated_fraction if s.kind != "relu" else None} for name, s in zip(names, sites)]}
    for s in sorted(sites, key=lambda s: -max(s.dead_fraction, s.saturated_fraction)):  # the worst layer first
        if s.kind == "relu" and s.dead_fraction > DEAD:
            _report_dead(ctx, s, seen)
        elif s.kind != "relu" and s.saturated_fraction > SATURATED:
            _report_saturated(ctx, s, seen)


def _report_dead(ctx: Context, s: SiteStats, seen: int) -> None:
    ctx.emit("NUM004",
             f"{s.dead_units} of the {s.units} units of {s.site.describe()} ({s.dead_fraction:.0%}) never activate on "
             f"{seen} training samples of the untrained model: their input is negative for every sample, so the ReLU "
             "outputs 0 and passes no gradient, and they never recover.",
             location=s.site.location(_outside(ctx)),
             evidence={"dead_units": s.dead_units, "units": s.units, "dead_fraction": s.dead_fraction, "samples": seen,
                       "layers": ctx.extras["activations"]["layers"]},
             suggestions=["Use the default (or Kaiming) initialisation and a zero or small positive bias for the layer "
                          "before it; a large negative bias kills units.",
                          "Normalise the inputs (or add batch-/layer-norm before the ReLU), or use LeakyReLU/GELU."])


def _report_saturated(ctx: Context, s: SiteStats, seen: int) -> None:
    ends = "|tanh| > 0.99" if s.kind == "tanh" else "sigmoid below 0.01 or above 0.99"
    ctx.emit("NUM005",
             f"{s.saturated_fraction:.0%} of the outputs of {s.site.describe()} ({s.kind}, {s.units} units) are at the "
             f"flat ends ({ends}) on {seen} training samples of the untrained model: there the derivative is nearly 0, "
             "so almost no gradient reaches the layers below.",
             location=s.site.location(_outside(ctx)),
             evidence={"saturated_fraction": s.saturated_fraction, "units": s.units, "samples": seen,
                       "activation": s.kind, "layers": ctx.extras["activations"]["layers"]},
             suggestions=["Initialise the layer before it for this activation: "
                          "`nn.init.xavier_uniform_(w, gain=nn.init.calculate_gain('tanh'))` (the default init is also "
                          "fine); large weights saturate it.",
                          "Normalise the inputs, or add LayerNorm before the activation."])
