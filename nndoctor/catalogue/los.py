"""LOS: incorrect input to the loss."""
from nndoctor.catalogue import Code, Severity

CODES = [
    Code(
        code="LOS001",
        name="probabilities-to-logit-loss",
        severity=Severity.ERROR,
        summary="Softmax/sigmoid outputs fed to a loss that expects logits (CrossEntropyLoss, BCEWithLogitsLoss).",
        what="""
The input of a loss that applies softmax or sigmoid itself (`CrossEntropyLoss`,
`BCEWithLogitsLoss`) is already probabilities. nndoctor traces one forward pass and the loss of the
untrained model, finds the real loss call inside your `loss_fn` (a module, `F.cross_entropy` or a
lambda), and judges its input: made by a softmax or sigmoid (`nn.Softmax`, `F.softmax`, `.sigmoid()`,
or `exp(x) / exp(x).sum()` by hand), or rows in [0, 1] summing to 1. The finding names the layer
(`model.3`) or the line of the forward or loss that made them.
In a live run (`nndoctor run`, the Monitor, the callbacks), the first 8 training calls of
`F.cross_entropy` / `F.binary_cross_entropy_with_logits` (which the loss modules call) have their input
read: probability rows in every call (or a sigmoid's output) name the model's last `nn.Softmax`/`nn.Sigmoid`,
else the loss line; compiled models (`torch.compile`) alike. The Keras callback reads the compiled loss:
`from_logits=True` after a last layer with a softmax/sigmoid activation. `evidence.cause` = `activation`.
""",
        why="""
Softmax is applied twice: the loss can only move within a narrow range, gradients shrink, and the
model trains slowly to a mediocre accuracy without any error.
""",
        example="""
model = nn.Sequential(nn.Linear(64, 10), nn.Softmax(dim=1))
loss = nn.CrossEntropyLoss()(model(x), y)
""",
        fix="""
Remove the final `nn.Softmax`/`nn.Sigmoid`: `CrossEntropyLoss` and `BCEWithLogitsLoss` take raw
logits. Apply softmax only when you need probabilities at inference time.
""",
        ignore="Never for CrossEntropyLoss or BCEWithLogitsLoss.",
    ),
    Code(
        code="LOS002",
        name="not-log-probabilities",
        severity=Severity.ERROR,
        summary="A loss that expects log-probabilities (NLLLoss, KLDivLoss) gets logits or probabilities.",
        what="""
`NLLLoss` and `KLDivLoss` expect log-probabilities (values <= 0 whose exp sums to 1 per row). The
input of the traced loss call is raw logits (positive values), probabilities (rows in [0, 1] summing to
1), or values <= 0 that are not normalised (e.g. `logsigmoid`). An input made by `log_softmax` is
never reported.
""",
        why="NLLLoss on logits is minimised by making one logit huge, not by learning the classes: the loss is meaningless.",
        example="""
model = nn.Sequential(nn.Linear(64, 10))
loss = nn.NLLLoss()(model(x), y)
""",
        fix="Add `nn.LogSoftmax(dim=1)` as the last layer, or use `CrossEntropyLoss` on the logits.",
        ignore="Never: the loss does not measure what you think it measures.",
    ),
    Code(
        code="LOS003",
        name="loss-task-mismatch",
        severity=Severity.ERROR,
        summary="The loss or the output activation does not fit the targets.",
        what="""
The loss or the output activation cannot represent the targets, judged on the traced loss call of
the first batch:
- an output activation whose range misses more than 1% of the targets of a regression loss
  (sigmoid for targets outside [0, 1], tanh outside [-1, 1], ReLU for negative targets);
- a softmax output against target rows that do not sum to 1 (several labels per sample);
- a ReLU right before `BCEWithLogitsLoss` (sigmoid >= 0.5 always) or `CrossEntropyLoss` (warning);
- softmax, or a class-index loss, over a single output unit: constant, no gradient;
- cross-entropy with float targets that are not class distributions (continuous or multi-label);
- BCE on class indices 0..K-1 with K > 2;
- MSE/L1 on integer targets 0..K-1 with one output (warning: fine for ordered quantities; silent
  with `Setup(task="regression")`).
""",
        why="The model optimises something other than the task; it may train and still be useless.",
        example="""
model = nn.Sequential(nn.Linear(10, 1), nn.Sigmoid())
loss = nn.MSELoss()(model(x), house_prices)      # targets in the hundreds of thousands
""",
        fix="""
Match loss and output to the targets: CrossEntropyLoss with one logit per class for class indices,
MSE/L1 with a linear output for regression, BCEWithLogitsLoss with one logit per label for binary
or multi-label targets.
""",
        ignore="Rarely; e.g. a deliberate ordinal regression on class indices.",
    ),
    Code(
        code="LOS004",
        name="bad-initial-loss",
        severity=Severity.WARNING,
        summary="The untrained model's loss is far from what it should be (e.g. ln(C) for C classes).",
        what="""
Before training, a well-initialised model predicts roughly uniform classes, so its cross-entropy is
about ln(C); for MSE it is about the target variance. nndoctor recomputes the traced loss call, with
the same targets and options (class weights, label smoothing, soft targets, reduction), on an
uninformed prediction: zero logits (uniform classes, 0.5 for BCE), or the mean target for regression.
It reports when the untrained loss exceeds that by more than max(1, itself) for classification
losses, or for regression when it is more than 10 times the target variance (4 times when the targets
are in the tens or more); L1-type losses 3.5 and 2 times. Both numbers are in the message. It is a
warning only when the harm is measured: a copy trained 30 steps on the first batch with your optimizer
still carries more than 10% of the excess over the uninformed loss; when the copy sheds it at once, info.
""",
        why="""
A far-off initial loss points to a bad initialisation, an output scale bug, a wrong loss reduction
or mis-scaled targets, and costs the first part of training.
""",
        example="""
head = nn.Linear(128, 10); nn.init.normal_(head.weight, std=10.0)   # huge logits: loss ~ 40 instead of 2.3
""",
        fix="Use the default initialisation (or scale the last layer down), check the loss's reduction and the target scale.",
        ignore="For pretrained models with a new head, whose logits may start large; `Setup(trained=True)` skips it.",
    ),
    Code(
        code="LOS005",
        name="padding-in-loss",
        severity=Severity.ERROR,
        summary="Padded positions are trained as a real class: the targets hold the padding token and ignore_index does not skip them.",
        what="""
A token-level cross-entropy over the vocabulary of the model's `nn.Embedding` (a language-model head:
the loss's class count equals the embedding's `num_embeddings`) gets targets equal to the embedding's
`padding_idx`, and its `ignore_index` (default -100) is not that id; or a per-token cross-entropy (a
tagger: one label per input token) scores labels at positions whose input is the `padding_idx`. In a live
run the first 4 such training calls are read; the finding quotes the share of padded targets and of the loss they carry,
located at the loss line. `evidence.cause` = `loss`.
""",
        why="""
The model spends its capacity predicting padding, an easy and frequent target: the loss falls while the
real tokens' loss barely moves, perplexity and accuracy are inflated by the padding, and longer padding
(a bigger batch of short sequences) changes what is learned.
""",
        example="""
embed = nn.Embedding(vocab, d, padding_idx=PAD)
loss = F.cross_entropy(logits.reshape(-1, vocab), targets.reshape(-1))   # targets padded with PAD
""",
        fix="""
`F.cross_entropy(..., ignore_index=PAD)` (or `nn.CrossEntropyLoss(ignore_index=PAD)`), or set the padded
targets to -100 when batching.
""",
        ignore="When the padding id is also a real token the model must predict (rare: an end-of-sequence id reused as padding is better masked too).",
    ),
]
