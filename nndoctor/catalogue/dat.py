"""DAT: inputs and targets pre-processed incorrectly."""
from nndoctor.catalogue import Code, Severity

E, W = Severity.ERROR, Severity.WARNING

CODES = [
    Code(
        code="DAT001",
        name="unnormalized-inputs",
        severity=E,
        summary="Input scale far from what the model expects (raw 0-255 pixels, features with huge or tiny spread).",
        what="""
nndoctor runs the model's forward on the first batch and measures the inputs where they reach the
first layer with weights (after any rescaling the model does itself). It reports features whose root
mean square is far above unit scale (error from 100, warning from 20), all features far below it
(under 1e-3), or features on wildly different scales (the largest 100 times the median). Inputs that
first reach a normalisation layer (BatchNorm, LayerNorm, GroupNorm) are fine at any scale. Integer
token ids fed to an embedding are not features and are never judged.
""",
        why="""
Weights are initialised for inputs of roughly unit scale. Values in the hundreds saturate activations,
make the first layer's gradients hundreds of times larger than the rest and force a tiny learning
rate; features on very different scales make the loss surface badly conditioned, so the large
features dominate and the small ones are ignored.
""",
        example="""
x = torch.tensor(images, dtype=torch.float32)      # raw pixels 0..255
x = torch.tensor(df.values, dtype=torch.float32)   # area ~1000 next to smoothness ~0.1
""",
        fix="""
Scale pixels to [0, 1] (`x / 255`) and normalise with the dataset's channel statistics
(`transforms.Normalize(mean, std)`); standardise tabular features with statistics of the training
split (`StandardScaler().fit(x_train)`, then transform every split); or start the model with a
normalisation layer.
""",
        ignore="When the scale is deliberate and the model is built for it.",
    ),
    Code(
        code="DAT002",
        name="non-finite-data",
        severity=E,
        summary="NaN or Inf in inputs or targets.",
        what="""
nndoctor reads each split (all of it, or as much as it reads in about two seconds) and counts NaN and
Inf values in every input tensor and in the targets. The finding names the split, the tensor, how many
values and samples are affected, and the columns (or positions) that hold most of them.
""",
        why="""
One NaN in a batch makes that batch's loss NaN, and with it every gradient and, after the optimizer
step, every weight. Training does not crash; it silently stops learning, or the loss turns NaN at a
random step when a bad sample comes round.
""",
        example="""
df = pd.read_csv("data.csv")                       # missing measurements become NaN
x = torch.tensor(df.values, dtype=torch.float32)
""",
        fix="""
Find the values (`torch.isnan(x).nonzero()`), then impute them with statistics of the training split
(`SimpleImputer(strategy="median")`) or drop those samples; fix divisions by zero or logs of 0 in the
feature code.
""",
        ignore="Never: remove or impute non-finite values before training.",
    ),
    Code(
        code="DAT003",
        name="invalid-targets",
        severity=E,
        summary="Targets out of range for the number of classes, or encoded wrongly for the loss.",
        what="""
nndoctor compares the targets with the loss and the width of the model's output: class indices must
lie in [0, C-1] for C outputs (labels 1..C are 1-based; negative padding labels need `ignore_index`);
`NLLLoss` and integer one-hot rows do not mix (class indices are expected); binary cross-entropy needs
targets in [0, 1] (not -1/+1 labels, not class indices of a multi-class problem). When the bad targets
also crash the training step, this finding replaces the bare "Target N is out of bounds" with the
cause.
""",
        why="""
Out-of-range indices crash on CPU and can trigger device-side asserts or read garbage on a GPU.
Targets outside [0, 1] in BCE do not crash at all: the loss goes negative and pulls the outputs
towards meaningless values.
""",
        example="""
y = torch.tensor(df["class"].values)                 # 1, 2, 3 as in the file
loss = nn.CrossEntropyLoss()(model(x), y)            # 3 outputs: index 3 is out of range

y = 2 * labels - 1                                   # -1 / +1, as for an SVM
loss = nn.BCEWithLogitsLoss()(model(x), y)
""",
        fix="""
Shift 1-based labels (`y - 1`), set `ignore_index` to the padding label, size the output layer to the
number of classes, convert one-hot rows with `y.argmax(1)` (or one-hot indices with `F.one_hot`), and
map -1/+1 labels to 0/1 with `(y + 1) / 2`.
""",
        ignore="Never: targets the loss cannot read either crash or train towards nonsense.",
    ),
    Code(
        code="DAT004",
        name="no-signal",
        severity=W,
        summary="Targets look unrelated to inputs (labels shuffled or misaligned).",
        what="""
On up to 1000 training samples, nndoctor fits a logistic (or ridge) regression and a 5-nearest-
neighbour model on each half and predicts the other half. The targets look unrelated to the inputs
when no probe is better than chance with statistical significance (a one-sided binomial test of
accuracy against the accuracy of predictions independent of the labels, or a correlation test for
regression, at p = 0.01) and, with 99% confidence, every probe's edge over chance is below 0.15 of the
way to perfect (a correlation below 0.15): small data sets, where neither can be shown, are left
alone. Inputs that hold token ids or other indices are skipped: a probe on raw id values means
nothing. With `val_data`, the same probes run on the validation pairs: when they find a clear signal
there (p <= 0.01, edge >= 0.15), the inputs do carry the target and the training pairs are broken; the
finding is then an error with `evidence.cause = "labels"` and both scores in `verified_fix`. When the
validation pairs show no signal either (the same broken pairing in both, or no signal at all), or
there is no `val_data`, nothing is confirmed and the finding says so.
""",
        why="""
A network can memorise random labels, so training loss still goes down while validation stays at
chance. The usual cause is a pipeline that shuffles or sorts inputs and labels separately, or reads
labels in a different order from the files.
""",
        example="""
x = x[torch.randperm(len(x))]
y = y[torch.randperm(len(y))]          # a second permutation: labels no longer match their inputs
""",
        fix="""
Index inputs and targets with the same permutation, and check that joins, sorts and file listings
keep rows aligned (print a few samples with their labels).
""",
        ignore="""
When the relation exists but simple probes on raw values cannot see it (phase-shifted signals,
parity-like rules): silence with `--ignore DAT004`.
""",
    ),
    Code(
        code="DAT005",
        name="split-mismatch",
        severity=E,
        summary="Train and validation inputs are pre-processed differently.",
        what="""
nndoctor compares per-feature statistics of samples of the training and validation splits. When a
typical (median) feature's validation mean lies more than 3 training standard deviations from its
training mean, or its spread differs by more than 5 times, the two splits went through different
pre-processing: one normalised and the other not, pixels divided by 255 in one loader only.
""",
        why="""
The validation score then measures the difference between the pipelines, not the model: a good model
looks broken, or early stopping and model selection follow noise.
""",
        example="""
scaler = StandardScaler().fit(x_train)
x_train = scaler.transform(x_train)          # x_val is never transformed
""",
        fix="""
Build one transform and apply it to every split: fit the scaler on train, then
`scaler.transform(x_val)`; use the same `ToTensor()`/`Normalize(mean, std)` in both loaders.
""",
        ignore="When validation really comes from a different distribution on purpose.",
    ),
    Code(
        code="DAT006",
        name="unshuffled-batches",
        severity=E,
        summary="Batches are ordered by target.",
        what="""
nndoctor reads the first 8 training batches in the order the data yields them. When the median batch
is at least 90% one class, and batches drawn at random from the same targets are that pure less than
1% of the time (200 simulated shufflings), the samples are ordered by target and not shuffled. For
regression, a rank correlation of at least 0.9 between position and target means the targets are
sorted (warning).
""",
        why="""
Each run of same-class batches pulls the model towards that class, and the next run undoes it: the
loss oscillates, batch-norm statistics are biased per batch, and the model ends up favouring the
classes it saw last.
""",
        example="""
x, y = x[y.argsort()], y[y.argsort()]                 # or one folder per class, read in order
loader = DataLoader(TensorDataset(x, y), batch_size=64)   # shuffle defaults to False
""",
        fix="""
Shuffle every epoch: `DataLoader(dataset, batch_size=64, shuffle=True)`, or permute tensors before
batching them.
""",
        ignore="When the order is part of the method (curriculum learning, stateful sequence models).",
    ),
    Code(
        code="DAT007",
        name="split-overlap",
        severity=E,
        summary="The same samples appear in train and validation.",
        what="""
nndoctor hashes the exact bytes of every sample's inputs, for both splits (all of each, or as much as
it reads in about two seconds), and counts validation samples found in the training data. Natural duplicates are allowed for: the overlap must exceed 5% plus twice
the rate at which the training data duplicates itself. Error from 50% overlap, warning below.
""",
        why="""
Validation samples the model trained on reward memorising: the validation score overstates how the
model does on new data, and model selection and early stopping optimise the wrong thing.
""",
        example="""
x_val, y_val = x[:360], y[:360]
train = TensorDataset(x, y)            # still holds the validation rows
""",
        fix="""
Split once by index before augmentation or oversampling (`train_test_split`, `random_split`),
deduplicate the data first, and split grouped data by group (`GroupShuffleSplit`).
""",
        ignore="When the overlap is known and intended (e.g. a sanity check on training data).",
    ),
    Code(
        code="DAT008",
        name="class-imbalance",
        severity=W,
        summary="Classes so unbalanced that accuracy misleads.",
        what="""
nndoctor counts the classes of the training targets. When the largest class has at least
5 times as many samples as the smallest (for multi-label targets: a label positive, or negative, in
fewer than 1 in 6 samples), the finding gives the counts and the accuracy of always predicting the
majority class. With a weighted loss (`weight=`, `pos_weight=`) it is information only.
""",
        why="""
A model that always predicts the majority class scores the majority's share as accuracy, so accuracy
looks good while the rare classes, usually the interesting ones, are never predicted.
""",
        example="""
y = (digits.target == 0).float()          # about 1 positive per 9 negatives
loss = nn.BCEWithLogitsLoss()
""",
        fix="""
Judge the model with balanced accuracy, macro F1 or per-class recall and a confusion matrix; weight
the loss by inverse class frequency (`nn.CrossEntropyLoss(weight=...)`,
`BCEWithLogitsLoss(pos_weight=...)`) or oversample rare classes (`WeightedRandomSampler`).
""",
        ignore="When you already evaluate with a metric that accounts for imbalance.",
    ),
]
