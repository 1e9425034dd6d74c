"""GRD: gradient flow, measured while overfitting a single batch."""
from nndoctor.catalogue import Code, Severity

E, W = Severity.ERROR, Severity.WARNING

CODES = [
    Code(
        code="GRD001",
        name="no-gradient",
        severity=E,
        summary="Parameters receive no gradient (a detached path, an unused module, requires_grad switched off).",
        what="""
Parameters that require grad got no gradient (`.grad` stayed None, or exactly zero) at every step of
the single-batch run. nndoctor watches one forward pass to say why, per module (the largest module
whose parameters all got none): it ran under `torch.no_grad()` (its output has no gradient history:
error); its output reached a later module through `.detach()`, `.data` or numpy (the same memory
arrived without history: error); it never ran, its output does not reach the loss, or its gradient
is exactly zero (multiplied by zero, dead units): warning. Parameters you froze on purpose
(`requires_grad=False`) are not reported.
""",
        why="These weights never learn, while the model looks as if it trains: the loss still falls through the rest.",
        example="""
def forward(self, x):
    features = self.encoder(x).detach()   # the encoder never learns
    return self.head(features)
""",
        fix="""
Remove the `.detach()` / `torch.no_grad()` on the training path. To freeze on purpose, set
`requires_grad_(False)` on those parameters (and leave them out of the optimizer). Delete modules
that are never used, or use them.
""",
        ignore="For a module that is unused on purpose (e.g. a pooler that the loss does not need).",
    ),
    Code(
        code="GRD002",
        name="not-updated",
        severity=E,
        summary="Parameters get gradients but the optimizer never changes them.",
        what="""
Parameters received gradients during the single-batch run but kept exactly their initial values.
nndoctor names them and the reason: they are not in the optimizer (or the optimizer holds none of
the model's parameters: it was built for another model, or before the model was copied or
re-created), or their parameter group has a learning rate of 0. It then rebuilds the optimizer over
the model's own parameters on a copy and shows the difference.
""",
        why="Training runs and the loss may even move, but these weights never learn.",
        example="""
model = Net(); other = Net()
optimizer = torch.optim.Adam(other.parameters(), lr=1e-3)   # built for a different model
""",
        fix="""
Build the optimizer from the model you train, after any `.to(device)` or re-creation:
`torch.optim.Adam(model.parameters(), lr=1e-3)`; put every trainable parameter in a group; use a
learning rate above 0.
""",
        ignore="Never for all parameters; for some, when they are frozen on purpose (then set requires_grad=False).",
    ),
    Code(
        code="GRD003",
        name="exploding-gradients",
        severity=W,
        summary="Gradient norms or update/weight ratios blow up.",
        what="""
During the single-batch run the total gradient norm became NaN/Inf or grew a hundredfold from its
first step (correct models stay within 2x), or a weight matrix's update was larger than the matrix
itself (update/weight ratio above 1; correct models stay below 0.2) in at least 3 steps. The finding
names the layers, with their largest ratios and gradient norms, and shows the run with the learning
rate 10x lower. Growing gradients of parameters that never move are GRD002's (nothing zeroes them).
""",
        why="""
Updates larger than the weights erase what was learned; growing gradients end in NaN. Healthy
training changes a layer by about 1e-4 to 1e-2 of its norm per step.
""",
        example="""
optimizer = lambda p: torch.optim.SGD(p, lr=10)
""",
        fix="""
Lower the learning rate; clip gradients (`torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)`);
add normalisation layers or residual connections; check the initialisation of the named layers.
""",
        ignore="Briefly at the very start of training with a warm-up schedule.",
    ),
    Code(
        code="GRD004",
        name="vanishing-gradients",
        severity=W,
        summary="Gradients of early layers are orders of magnitude too small to learn.",
        what="""
Measured over the first 20 steps of the single-batch run, the gradient of some early weight matrices,
relative to their weights (|grad| / |weight|), is at least ten thousand times smaller than that of a
layer that runs later in the forward pass (a plain 10-layer ReLU MLP with PyTorch's default
initialisation spans about a thousandfold; a 10-layer sigmoid stack a billionfold). The finding names
the layers, in forward order, with their ratio to the best-learning layer. Embedding tables (whose
gradients are sparse by nature) and parameters with no gradient at all (GRD001) are not judged.
""",
        why="Early layers learn a thousand times slower than the rest: a deep network behaves like a shallow one.",
        example="""
layers = []
for _ in range(10):
    layers += [nn.Linear(64, 64), nn.Sigmoid()]   # each sigmoid scales gradients by at most 1/4
model = nn.Sequential(*layers, nn.Linear(64, 10))
""",
        fix="""
Use ReLU/GELU instead of sigmoid/tanh in hidden layers, add normalisation (BatchNorm, LayerNorm) or
residual connections, and use an initialisation suited to the activation (Kaiming for ReLU).
""",
        ignore="When the early layers are meant to change slowly (e.g. a pretrained backbone at a low learning rate).",
    ),
    Code(
        code="GRD005",
        name="gradient-accumulation",
        severity=E,
        summary="Gradients are never zeroed between steps.",
        what="""
In a live training loop, the gradients of consecutive steps add up: `optimizer.zero_grad()` (or
`model.zero_grad()`) is never called between `optimizer.step()` calls, so each step uses the sum of
all gradients so far.
""",
        why="Steps grow without bound and point in stale directions; training diverges or stalls.",
        example="""
for x, y in loader:
    loss = loss_fn(model(x), y)
    loss.backward()
    optimizer.step()        # no optimizer.zero_grad()
""",
        fix="Call `optimizer.zero_grad()` once per step, before `backward()` (or after `step()`).",
        ignore="When you accumulate on purpose over a fixed number of micro-batches and zero after each step.",
    ),
    Code(
        code="GRD006",
        name="gradients-zeroed-before-step",
        severity=E,
        summary="zero_grad() runs between backward() and step(): the step applies no gradient.",
        what="""
In a live training loop, `backward()` computed gradients for the optimizer's parameters, then
`optimizer.zero_grad()` (or `model.zero_grad()`) erased them, and only then did `optimizer.step()` run,
in most steps. nndoctor records the order of backward, zero_grad and step per optimizer (the
backward counts when it reached the optimizer's parameters) and names the line of the zero_grad.
""",
        why="Every step sees gradients that are None (or zero): the model never learns, whatever the learning rate.",
        example="""
loss.backward()
optimizer.zero_grad()     # erases what backward just computed
optimizer.step()
""",
        fix="Call `optimizer.zero_grad()` before `loss.backward()` (or right after `optimizer.step()`).",
        ignore="Never in a training loop.",
    ),
    Code(
        code="GRD007",
        name="accumulation-reset",
        severity=E,
        summary="zero_grad() inside the gradient-accumulation loop: only the last micro-batch counts.",
        what="""
Several micro-batches ran `backward()` before each optimizer step, but a `zero_grad()` between them
erased the gradients of the earlier ones before any step used them (the parameters had not changed
and no step was tried since), in most steps. nndoctor gives the number of micro-batches and the line
of the zero_grad. A zero_grad after gradients were used (by a step, a skipped GradScaler step, or an
optimizer that changed the parameters, like SAM's first step) is not counted.
""",
        why="""
The step sees one micro-batch's gradient instead of the accumulated one: the effective batch is k
times smaller than intended and k-1 of every k backward passes are wasted compute.
""",
        example="""
for i, (x, y) in enumerate(loader):
    optimizer.zero_grad()                 # inside the micro-batch loop
    (loss_fn(model(x), y) / accum).backward()
    if (i + 1) % accum == 0:
        optimizer.step()
""",
        fix="Zero the gradients once per optimizer step: call `optimizer.zero_grad()` right after `optimizer.step()`.",
        ignore="Never when you meant to accumulate.",
    ),
    Code(
        code="GRD008",
        name="accumulation-not-averaged",
        severity=W,
        summary="Gradient accumulation sums the micro-batches' losses instead of averaging them.",
        what="""
Several micro-batches (each with its own forward pass) ran `backward()` into one optimizer step, and
none of their losses was divided (or multiplied) by a constant before `backward()`: the step's
gradient is the sum over k micro-batches, k times the mean. With SGD the update is k times larger
(a warning quoting the effective learning rate); Adam-like optimizers divide the gradient's scale
out, so there it is info.
""",
        why="""
With SGD, the effective learning rate is k times the one you set; changing the number of micro-batches
silently changes the learning rate.
""",
        example="""
for i, (x, y) in enumerate(loader):
    loss_fn(model(x), y).backward()       # not divided by accum
    if (i + 1) % accum == 0:
        optimizer.step(); optimizer.zero_grad()
""",
        fix="Divide each micro-batch's loss by the number of micro-batches: `(loss / accum).backward()`.",
        ignore="When you sum on purpose and chose the learning rate for the summed gradient.",
    ),
    Code(
        code="GRD009",
        name="clipping-misplaced",
        severity=E,
        summary="Gradient clipping runs before backward(), or on gradients a GradScaler has not unscaled.",
        what="""
`clip_grad_norm_`/`clip_grad_value_` ran before the `backward()` of the step (between zero_grad and
backward, or at the top of the loop): it clipped nothing of the gradients the step applied. Or, under
a `GradScaler`, it ran after `scaler.scale(loss).backward()` without `scaler.unscale_(optimizer)`: the
norm it compares with the threshold is the scaled one (tens of thousands of times too large), so
every step is clipped far harder than intended. nndoctor measures the harm on this run (steps whose
norm went over the threshold unclipped; how much more the scaled clip shrank the gradients); without
measured harm the finding is info.
""",
        why="Clipping that never acts lets spikes through; clipping of scaled gradients shrinks every update.",
        example="""
optimizer.zero_grad()
torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)   # no gradients yet
loss.backward()
optimizer.step()
""",
        fix="""
Clip after `loss.backward()` and before `optimizer.step()`; with a GradScaler call
`scaler.unscale_(optimizer)` first, then clip, then `scaler.step(optimizer)`.
""",
        ignore="Never: the clipping does not do what it says.",
    ),
]
