"""NUM: numerical instability (non-finite values, unstable formulations, dead or saturated units)."""
from nndoctor.catalogue import Code, Severity

CODES = [
    Code(
        code="NUM001",
        name="non-finite-forward",
        severity=Severity.ERROR,
        summary="NaN/Inf first produced in the forward pass, at this module and op.",
        what="""
The first NaN or Inf appeared in the forward pass (or the loss). nndoctor runs three training steps
on the first batch reading only the loss and the gradient norm; when one is not finite it replays that
step with every op checked, and names the first op that made NaN out of NaN-free inputs (or Inf out of
finite ones) whose values reached the loss: the op, the module, your source line and the range of the
op's inputs (zeros, negatives). Infinities written on purpose (`masked_fill(mask, -inf)`) are not
reported; the NaN that a fully masked softmax makes of them is. Parameters that already hold NaN are
reported too.
""",
        why="""
One NaN spreads to every parameter in one optimizer step and the model is lost; the loss that
finally shows `nan` says nothing about where it began.
""",
        example="""
h = torch.log(x)          # x contains zeros or negatives
""",
        fix="""
Guard the op: `torch.log(x.clamp_min(1e-8))`, `torch.log1p`, `torch.sqrt(x + eps)`, use stable
library functions (`log_softmax`, `logsumexp`), and check the inputs for NaN (DAT002).
""",
        ignore="Never: training cannot recover from NaN parameters.",
    ),
    Code(
        code="NUM002",
        name="non-finite-backward",
        severity=Severity.ERROR,
        summary="NaN/Inf first produced in the backward pass, at this module.",
        what="""
The forward pass and the loss are finite, but a gradient becomes NaN or Inf in the backward pass. On
the replayed step a hook on every node of the autograd graph finds the first node that made a
non-finite gradient out of a finite incoming one (e.g. `SqrtBackward0`: the derivative of `sqrt` at 0
is infinite), with the forward op that created it, its module, your line and its inputs' range. Also
reported, at `optimizer`, when finite gradients give NaN/Inf parameters (a learning rate of inf, Adam
with `eps=0`).
""",
        why="The first optimizer step writes NaN into the parameters.",
        example="""
norm = torch.sqrt((x ** 2).sum(1))    # gradient of sqrt at 0 is inf
""",
        fix="Add an epsilon inside the op (`torch.sqrt(s + 1e-12)`), or use `torch.linalg.vector_norm`.",
        ignore="Never: one non-finite gradient corrupts every parameter it reaches.",
    ),
    Code(
        code="NUM003",
        name="unstable-formulation",
        severity=Severity.WARNING,
        summary="A formulation that overflows or underflows (log of softmax/sigmoid, exp of large values, division by ~0).",
        what="""
An op sequence that is mathematically fine but numerically fragile, found by tracing one forward pass
and the loss: the log of a softmax or sigmoid output (also `log(1 - sigmoid(x))`), a softmax written by
hand as `exp(x) / exp(x).sum()`, the log of a sum of exps, `exp` of values above 44 (half-way to
float32 overflow), a division by values below 1e-12, and `BCELoss` on a sigmoid output. It may be
finite today and overflow after a few updates. A log of `p + eps` or `p.clamp_min(eps)` is the fix and
stays silent. Severity follows measured harm: one forward/loss/backward on the first batch is rerun with
the stable form swapped in (`log_softmax`, `logsigmoid`, `BCEWithLogits`); a warning when that changes
the loss by more than 0.1% or the gradients by more than 1% of their norm (a saturated sigmoid under
`BCELoss`), or a denominator below 1e-12 was seen; otherwise info, quoting the measurement.
""",
        why="""
`log(softmax(x))` underflows to `-inf` as soon as one probability rounds to zero; `exp(x)` overflows
for x > 88 in float32. The fused forms are exact and stable.
""",
        example="""
loss = -(y_onehot * torch.log(torch.softmax(logits, 1))).sum(1).mean()
""",
        fix="""
`torch.log_softmax` instead of `log(softmax)`, `F.logsigmoid` instead of `log(sigmoid)`,
`BCEWithLogitsLoss` instead of `BCELoss(sigmoid(x))`, `logsumexp`, and an epsilon in divisions.
""",
        ignore="When the inputs are known to be bounded (e.g. a temperature-scaled softmax over few classes).",
    ),
    Code(
        code="NUM004",
        name="dead-units",
        severity=Severity.WARNING,
        summary="ReLU-like units that never activate.",
        what="""
More than half of the units of a ReLU layer (of at least 8 units; channels for convolutions) get a
negative input for every one of 128 training samples of the untrained model: they output zero and
get no gradient, so they never recover. Inputs that are exactly zero (sparse inputs, a ReLU after a
ReLU) do not count as negative. Layers and functional `torch.relu` calls are both seen.
""",
        why="The layer's capacity is wasted; with many dead units the model cannot learn.",
        example="""
fc = nn.Linear(64, 128); nn.init.constant_(fc.bias, -10.0)   # every pre-activation negative
""",
        fix="""
Use a standard initialisation (`nn.init.kaiming_normal_`), a lower learning rate, LeakyReLU/GELU,
or normalise the inputs.
""",
        ignore="When sparsity is intended.",
    ),
    Code(
        code="NUM005",
        name="saturated-activations",
        severity=Severity.WARNING,
        summary="Sigmoid/tanh units stuck at their extremes.",
        what="""
More than half of the outputs of a sigmoid or tanh layer (of at least 8 units) on 128 training
samples of the untrained model are at the flat ends of the curve (|tanh| > 0.99, sigmoid below 0.01
or above 0.99), where the gradient is nearly zero. The per-layer fractions are plotted in the report.
""",
        why="Saturated units pass almost no gradient: the layers below stop learning (vanishing gradients).",
        example="""
fc = nn.Linear(64, 64); nn.init.normal_(fc.weight, std=5.0)   # huge pre-activations into tanh
""",
        fix="Use Xavier/Glorot initialisation, normalise inputs, add LayerNorm before the activation, or use ReLU/GELU.",
        ignore="For output layers whose targets really are at 0 or 1.",
    ),
    Code(
        code="NUM006",
        name="low-precision-loss",
        severity=Severity.WARNING,
        summary="The loss passed to backward() is float16/bfloat16 (its reduction ran in low precision).",
        what="""
The scalar passed to `backward()` (or to `GradScaler.scale`) was float16 or bfloat16: the loss, or the
sum/mean that makes it, was computed in low precision (a hand-written loss under `autocast`, a
`.half()` model without casting the output). Under autocast, PyTorch's losses (cross_entropy,
mse_loss) run in float32 by themselves; `mean`, `sum` of a product or a power written by hand do
not. A warning when the low-precision loss overflowed to Inf/NaN on this run; info otherwise.
""",
        why="""
float16 overflows above 65504 (a sum of squared errors does quickly) and both formats keep about 3
significant digits: the loss, and the gradient that starts from it, lose what fp32 would keep.
""",
        example="""
with torch.autocast("cuda", dtype=torch.float16):
    out = model(x)
    loss = ((out - y) ** 2).sum()        # float16
""",
        fix="Compute the loss in float32: `loss_fn(out.float(), y)`, or outside the autocast block.",
        ignore="When the loss is small and well within range and you accept 3 digits (bfloat16 training).",
    ),
    Code(
        code="NUM007",
        name="amp-skipped-steps",
        severity=Severity.WARNING,
        summary="A GradScaler skipped most optimizer steps: its gradients held Inf/NaN.",
        what="""
`scaler.step(optimizer)` skips the step whenever the (scaled) gradients hold Inf or NaN and halves the
scale at `update()`. A few skipped steps at the start are normal (the scale starts high and finds its
level); here at least half of the steps (and at least 5) were skipped, so the scale collapsed and most
steps changed nothing. nndoctor counts the skipped steps and reports the scale at the first step and
at the end; it replays the last training forward on a copy under the same autocast and names the op
that first made NaN/Inf, when the model makes it (else it was made in the loss or the backward pass).
""",
        why="Skipped steps do not train: the run looks alive (losses are logged) while the model barely changes.",
        example="""
with torch.autocast("cuda", dtype=torch.float16):
    loss = (model(x).exp()).mean()       # overflows in float16 every step
scaler.scale(loss).backward(); scaler.step(optimizer); scaler.update()
""",
        fix="""
Find what overflows in float16 (a loss or a sum computed in low precision, exp of large values, NaN
in the data) and compute it in float32, or train in bfloat16 (no scaler needed).
""",
        ignore="Never when most steps are skipped.",
    ),
]
