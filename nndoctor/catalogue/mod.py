"""MOD: train/eval mode misuse (dropout and batch-norm behave differently in each mode)."""
from nndoctor.catalogue import Code, Severity

CODES = [
    Code(
        code="MOD001",
        name="training-in-eval-mode",
        severity=Severity.ERROR,
        summary="Training steps run with dropout/batch-norm in eval mode.",
        what="""
The model was handed over in eval mode (or some of its submodules were), and it contains modules
whose behaviour depends on the mode: dropout, batch-norm and instance-norm with running statistics,
multi-layer RNNs and attention with dropout, and your own modules whose forward reads
`self.training`. A training loop that never calls `model.train()` trains them in eval mode. The
finding names them. A whole model in eval mode is an error; a submodule in eval mode inside a trainable
model is a warning; modules inside a frozen part (all its parameters `requires_grad=False`) are
deliberate and stay silent, as does everything with `Setup(trained=True)`.
""",
        why="""
In eval mode dropout is off (no regularisation) and batch-norm normalises with running statistics
that are never updated, so training silently differs from what you designed and often diverges
or overfits.
""",
        example="""
for epoch in range(10):
    train_one_epoch(model)
    model.eval(); validate(model)    # ...and model.train() is never called again
""",
        fix="Call `model.train()` at the start of every training epoch (and `model.eval()` before evaluating).",
        ignore="When a submodule is frozen in eval mode on purpose (e.g. a frozen batch-norm backbone).",
    ),
    Code(
        code="MOD002",
        name="evaluating-in-train-mode",
        severity=Severity.WARNING,
        summary="Evaluation runs with dropout/batch-norm in train mode.",
        what="""
Forward passes without gradients (under `torch.no_grad()` or `inference_mode`, as in a validation
loop) run while dropout or batch-norm modules are in train mode.
""",
        why="""
Dropout makes the validation metric noisy and pessimistic; batch-norm uses the statistics of the
evaluation batch and even updates its running statistics with validation data.
""",
        example="""
with torch.no_grad():
    for x, y in val_loader:
        acc += (model(x).argmax(1) == y).float().mean()   # model still in train mode
""",
        fix="Call `model.eval()` before evaluating and `model.train()` after.",
        ignore="For deliberate Monte-Carlo dropout at inference time.",
    ),
    Code(
        code="MOD003",
        name="batchnorm-tiny-batch",
        severity=Severity.INFO,
        summary="Batch-norm in train mode sees batches of size 1 (or tiny).",
        what="""
A batch-norm layer in train mode receives batches of fewer than 4 samples, typically the last batch
of a loader whose dataset size is not a multiple of the batch size. nndoctor reads the batch sizes of
an epoch from the loader's settings (`batch_size`, `drop_last`, the number of samples; tensors and
Datasets with `Setup(batch_size=...)`) without iterating it, and the batch-norm layers from step 1's
forward pass. An error when a layer would get one value per channel (training crashes), info otherwise
(a risk without a measured harm; the compare step's batch-size experiment confirms harm where a symptom
is seen). Where a copy's train-mode forward pass on that many samples is run and raises, the crash is
measured: the finding carries `evidence.cause="batch-size"` and the error (`measured_failure`). The noise
of 2-3 samples' statistics is not measured by one pass, so that finding carries no cause.
""",
        why="""
With one sample, BatchNorm1d crashes ("Expected more than 1 value per channel") and BatchNorm2d
normalises each image by itself; with a few samples the statistics are noisy and the running
averages are corrupted.
""",
        example="""
loader = DataLoader(dataset_of_1025, batch_size=64)   # the last batch has 1 sample
""",
        fix="""
DataLoader(..., drop_last=True), a larger batch, or GroupNorm/LayerNorm, which do not depend on
the batch.
""",
        ignore="When the tiny batches are rare and the layer uses GroupNorm-like statistics elsewhere.",
    ),
    Code(
        code="MOD004",
        name="functional-dropout-in-eval",
        severity=Severity.WARNING,
        summary="F.dropout called without training=self.training: dropout stays on at evaluation (live).",
        what="""
During evaluation (a forward under `torch.no_grad()`/`inference_mode` with the model in eval mode),
`torch.nn.functional.dropout` (or `alpha_dropout`, `feature_alpha_dropout`, `dropout1d/2d/3d`) ran with
its default `training=True`. The functional form does not know the module's mode, so `model.eval()`
does not turn it off. nndoctor names the line of the call. A call that passes `training=` explicitly
(Monte-Carlo dropout on purpose) is silent.
""",
        why="""
Evaluation still drops activations: the metric is noisy and pessimistic, and predictions differ from
run to run.
""",
        example="""
def forward(self, x):
    return self.fc2(F.dropout(F.relu(self.fc1(x)), 0.5))   # always on
""",
        fix="Pass `training=self.training` (`F.dropout(x, p, training=self.training)`), or use an `nn.Dropout` module.",
        ignore="When dropout at inference is deliberate (then pass `training=True` explicitly to say so).",
    ),
]
