"""RUN: getting one training step to run (forward, loss, backward, optimizer step)."""
from nndoctor.catalogue import Code, Severity

E = Severity.ERROR

CODES = [
    Code(
        code="RUN001",
        name="shape-mismatch",
        severity=E,
        summary="Forward or loss crashed on incompatible shapes.",
        what="""
A module (or the loss) received a tensor whose shape it cannot work with, and the training step
crashed. nndoctor names the module by its `named_modules()` path, what it expects (for example
`Linear(in_features=784)`), the shape it actually got, and the chain of output shapes of the modules
that ran before it.
""",
        why="""
Nothing trains until the step runs. The raw PyTorch message ("mat1 and mat2 shapes cannot be
multiplied (64x3136 and 784x10)") names neither the layer nor how the shape came about.
""",
        example="""
net = nn.Sequential(nn.Conv2d(1, 16, 3), nn.ReLU(), nn.Flatten(), nn.Linear(784, 10))
net(torch.randn(64, 1, 28, 28))   # Flatten gives (64, 10816), Linear expects 784 features
""",
        fix="""
Make the expected size match what arrives: set `in_features` to the size of the flattened
activation (or use `nn.LazyLinear`), add the missing `nn.Flatten()`, or permute channels-last
images `(N, H, W, C)` to `(N, C, H, W)` before a `Conv2d`.
""",
        ignore="Never: the step cannot run.",
    ),
    Code(
        code="RUN002",
        name="dtype-mismatch",
        severity=E,
        summary="A crash or a silent cast from mismatched dtypes.",
        what="""
Tensors of incompatible dtypes meet: float64 inputs against float32 weights, integer targets into a
regression loss, float class indices into cross-entropy. Some crash, some are silently cast (float
class indices are read as class probabilities by `CrossEntropyLoss`).
""",
        why="""
A crash stops training; a silent cast changes what the loss computes, for example soft-label
cross-entropy on what were meant to be class indices.
""",
        example="""
x = torch.from_numpy(features)            # numpy float64 -> torch.float64
loss = nn.MSELoss()(net(x), y_int)        # integer targets into a regression loss
""",
        fix="""
Convert once in the data pipeline: `x.float()` for inputs, `y.long()` for class indices,
`y.float()` for regression or BCE targets.
""",
        ignore="Never for a crash; for a warning, when the cast is intended.",
    ),
    Code(
        code="RUN003",
        name="device-mismatch",
        severity=E,
        summary="Tensors or modules on different devices.",
        what="""
Part of the model, a buffer, the inputs or a tensor created inside `forward` (or inside the loss)
lives on a different device from the rest, and the step crashes.
""",
        why="The step cannot run; the raw message does not say which module holds the stray tensor.",
        example="""
model.to("cuda")
mask = torch.ones(n)          # created on the CPU inside forward
return x * mask               # x is on cuda
""",
        fix="""
Move the whole model once with `model.to(device)`, register constant tensors as buffers
(`self.register_buffer("mask", ...)`) so they move with the model, and create new tensors with
`device=x.device`.
""",
        ignore="Never: the step cannot run.",
    ),
    Code(
        code="RUN004",
        name="out-of-memory",
        severity=E,
        summary="One training step does not fit in the device memory.",
        what="""
The peak memory of one training step (parameters, gradients, optimizer state and the activations
saved for backward) exceeds the device memory or the budget you gave (`--memory`). nndoctor reports
the breakdown, the largest consumers, the largest batch size that fits, and remedies ranked by how
much each saves.

How it is measured: steps on a copy are traced with PyTorch's fake tensors, which carry shapes but
no data, so nothing is allocated and any batch size takes the same fraction of a second. Every tensor
autograd saves is charged to the module running at the time; the peak counts every storage the step
creates until it is freed, optimizer update included. Two batch sizes (your batch and half of it)
give the growth per sample; the largest batch that fits is extrapolated, then traced with the next
size up. `--device cuda` (or `Setup(device="cuda")`) answers for a GPU even on a machine without one:
allocations round up to the CUDA allocator's 512-byte blocks, and what a trace cannot see (the CUDA
context, cuBLAS/cuDNN workspaces, fragmentation) is a stated margin in the breakdown. A step fake
tensors cannot trace (a data-dependent op such as `.item()`, a custom op) is run and measured instead
(the allocator's peak), and the finding says so (`evidence.method`). On CPU, `--memory SIZE`
simulates a device of that size; without it nothing is checked. On a GPU the memory this process can
use is the default, and an out-of-memory crash becomes this finding.
""",
        why="""
An out-of-memory crash says nothing about where the memory goes. Halving the batch blindly until it
fits wastes runs and can change the optimisation more than needed.
""",
        example="""
model = BigCNN()                    # activations of 512x512 images at batch 256
loss = loss_fn(model(x), y)         # CUDA out of memory
""",
        fix="""
In order of typical saving: a smaller batch with gradient accumulation to keep the effective batch,
activation checkpointing of the heaviest blocks, bf16/fp16 mixed precision, a lighter optimizer
(SGD or 8-bit Adam instead of Adam), freezing parts of the model.
""",
        ignore="When the budget given to nndoctor is smaller than the real device. The peak is that of a step "
               "with `zero_grad(set_to_none=True)` (PyTorch's default); gradients kept between steps add their size.",
    ),
    Code(
        code="RUN005",
        name="runtime-error",
        severity=E,
        summary="Any other error in forward, loss, backward or optimizer step.",
        what="""
The training step raised an error that is not about shapes, dtypes, devices or memory. nndoctor says
in which phase it happened (forward, loss, backward, optimizer step), the module path, the line of
your code, and the most common cause of that kind of error, from a catalogue of common PyTorch error
messages (`nndoctor codes --errors`); every crash finding ends with a search query for the message
with your own numbers and names removed (`evidence.search_query`; `evidence.known_error` names the entry).
""",
        why="The step cannot run.",
        example="""
def forward(self, x):
    h = torch.sigmoid(self.fc(x))
    h += 1                 # in-place change of a tensor sigmoid saved for backward
    return h
""",
        fix="""
Follow the explanation in the finding. For in-place errors use the out-of-place form (`h = h + 1`,
`nn.ReLU(inplace=False)`); for "backward through the graph a second time" do not reuse a graph
across steps (detach hidden states).
""",
        ignore="Never: the step cannot run.",
    ),
]
