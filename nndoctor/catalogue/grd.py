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
]
