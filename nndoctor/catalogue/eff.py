"""EFF: wasted compute. Every code here is info: the program is correct, it is only slower (or its
regularisation less useful) than it needs to be, and each finding quotes what was measured on this run."""
from nndoctor.catalogue import Code, Severity

I = Severity.INFO

CODES = [
    Code(
        code="EFF001",
        name="data-loader-bound",
        severity=I,
        summary="The training step waits on the data loader most of the time (info, with ms per step and the share).",
        what="""
nndoctor timed, on your own run, how long each training step spent inside the DataLoader's `next()`
(the batch being fetched, decoded and collated) against the wall time from one training forward to the
next. On a GPU it also recorded CUDA events at each step's end and the next forward's start (read once at
the end of the run, no synchronisation during it) to see whether the device sat idle meanwhile. It is
reported when, at the median step, the wait is more than half of the step and at least 1 ms (and, on a
GPU, the device idled for more than half of the step too).
""",
        why="""
Every millisecond the step waits for its batch, the model's hardware does nothing: the run takes longer
than its arithmetic needs. The 1 ms floor is where a fix can pay: worker processes and pinned-memory
threads hand each batch over at a cost of the order of a millisecond, so a shorter wait cannot be won
back (a tiny model on an in-memory TensorDataset spends 30-60% of a sub-millisecond step collating its
batch, and that is fine).
""",
        example="""
class Images(Dataset):
    def __getitem__(self, i):
        return decode_and_augment(self.paths[i]), self.labels[i]   # slow, in the training process
loader = DataLoader(Images(...), batch_size=64)                   # num_workers=0
""",
        fix="""
Load in parallel and ahead of the step: `DataLoader(..., num_workers=4, pin_memory=True,
persistent_workers=True, prefetch_factor=2)`; do fixed pre-processing (decoding, resizing, tokenising)
once, ahead of training, and keep the result in memory or on disk in its final form.
""",
        ignore="When loading is inherently the bottleneck (streaming from a remote store) and already parallel.",
    ),
    Code(
        code="EFF002",
        name="decay-on-norm-and-bias",
        severity=I,
        summary="Weight decay is applied to biases, normalisation weights or embeddings (info, naming them).",
        what="""
An optimizer parameter group with `weight_decay > 0` holds one-dimensional parameters (biases, the
scale and shift of LayerNorm/BatchNorm/RMSNorm), possibly with the embedding tables, all in one group:
the optimizer pulls them towards zero at every step. Reported once per optimizer, naming the modules,
how many tensors and elements are decayed that way, and the group's decay and learning rate (the share
of their value each step removes). Optimizers that already split their parameters into decayed and
non-decayed groups (nanoGPT decays only tensors of 2 or more dimensions; Hugging Face's Trainer leaves
biases and LayerNorm weights out) are not reported.
""",
        why="""
Weight decay regularises the weights that multiply inputs. A norm's scale and a bias do not add
capacity the way a weight matrix does; decaying them pulls normalised activations towards zero and
biases towards 0 for no regularisation benefit, and usually costs a little accuracy (the usual recipe
for transformers, ResNets trained with AdamW, and LLMs excludes them).
""",
        example="""
optimizer = torch.optim.AdamW(model.parameters(), lr=3e-4, weight_decay=0.1)   # every parameter decayed
""",
        fix="""
decay = [p for p in model.parameters() if p.dim() >= 2]
no_decay = [p for p in model.parameters() if p.dim() < 2]
optimizer = torch.optim.AdamW([{"params": decay, "weight_decay": 0.1},
                               {"params": no_decay, "weight_decay": 0.0}], lr=3e-4)
""",
        ignore="When you mean to decay them, or the decay is so small it does nothing (AdamW's default 0.01 over a short run).",
    ),
    Code(
        code="EFF003",
        name="tensor-core-misaligned-dims",
        severity=I,
        summary="Under fp16/bf16 autocast on a GPU, a large matmul's dimensions are not multiples of 8.",
        what="""
During a training forward under float16/bfloat16 autocast on CUDA, a Linear or convolution layer that
does a sizeable share of the model's multiply-adds (at least 5%, measured from the shapes of its first
call, and at least 10^8 per call: a smaller matmul takes less time on tensor cores than launching its
kernel, so its shape cannot matter) has an input or output size (features, channels) that is not a
multiple of 8. nndoctor names the module path, its dimensions and its share of the multiply-adds.
""",
        why="""
Tensor cores multiply tiles whose sides are multiples of 8 (16-bit types); a dimension like 50257 or
1000 forces padded or slower kernels for that layer. nanoGPT pads its vocabulary from 50257 to 50304 for
this reason and measured about 25% faster training.
""",
        example="""
lm_head = nn.Linear(768, 50257)        # vocabulary size, under torch.autocast("cuda", torch.bfloat16)
""",
        fix="Round the dimension up to a multiple of 8 (64 is better): pad the vocabulary, widen hidden sizes.",
        ignore="When the dimension is fixed by the data and the layer's share of the compute is small.",
    ),
    Code(
        code="EFF004",
        name="conv-not-channels-last",
        severity=I,
        summary="A convolutional net trains under mixed precision on a GPU with its inputs in channels-first layout.",
        what="""
During training forwards on CUDA under float16/bfloat16 autocast, the 2-D convolutions' inputs and
weights were in the default (N, C, H, W) contiguous layout rather than `torch.channels_last`, and those
convolutions do at least half of the model's multiply-adds (at least 10^8 per forward). nndoctor names
the convolutions (module paths) and the share of the model's multiply-adds they do.
""",
        why="""
cuDNN's fastest mixed-precision convolution kernels on tensor cores work in NHWC; with NCHW tensors it
transposes around every convolution or picks slower kernels (commonly 10-30% of a conv net's step).
""",
        example="""
model = torchvision.models.resnet50().cuda()
with torch.autocast("cuda", torch.bfloat16):
    loss = loss_fn(model(images.cuda()), labels.cuda())
""",
        fix="""
model = model.to(memory_format=torch.channels_last)
images = images.cuda().to(memory_format=torch.channels_last)
""",
        ignore="For networks whose convolutions do a small part of the work, or in float32 without tensor cores.",
    ),
    Code(
        code="EFF005",
        name="float32-on-bf16-gpu",
        severity=I,
        summary="Training runs in float32 on a GPU that supports bfloat16 (no autocast, float32 parameters).",
        what="""
The training forwards ran on CUDA without autocast, with float32 parameters and inputs reaching the
Linear/convolution layers in float32, on a device where `torch.cuda.is_bf16_supported()` is true.
nndoctor names the device and the number of parameters trained that way.
""",
        why="""
On GPUs with bfloat16 tensor cores (A100, H100, RTX 30xx and later) bfloat16 matmuls run several times
faster than float32 and halve activation memory; bfloat16 keeps float32's range, so it needs no
GradScaler. (TF32, `torch.backends.cuda.matmul.allow_tf32`, recovers part of the gap in float32.)
""",
        example="""
model = model.cuda()
loss = loss_fn(model(x.cuda()), y.cuda())        # plain float32
""",
        fix="""
with torch.autocast("cuda", dtype=torch.bfloat16):
    loss = loss_fn(model(x), y)
loss.backward()                                  # keep float32 parameters and optimizer state
# Lightning: Trainer(precision="bf16-mixed"); Hugging Face: TrainingArguments(bf16=True)
""",
        ignore="When you need float32 for a numerically delicate model, or compare against a float32 baseline.",
    ),
]
