"""CMP: compare to known results (simple baselines, zeroed inputs, known results, a reference model)."""
from nndoctor.catalogue import Code, Severity

E, W = Severity.ERROR, Severity.WARNING

CODES = [
    Code(
        code="CMP001",
        name="below-baseline",
        severity=E,
        summary="The model does not beat simple baselines (majority/mean, linear, nearest neighbours).",
        what="""
nndoctor trains a copy of the model for a few epochs (or, with `Setup(trained=True)`, takes the model
as given) and scores it on the validation data, or on a held-out part of the training data when there
is none. On the same samples and metric it scores baselines fitted with scikit-learn on the flattened
inputs: the majority class (or the mean), a logistic (or ridge) regression, and 5-nearest neighbours
(token ids become a bag of tokens; nearest neighbours are skipped for them). Error: the model is not
better than the majority/mean baseline by more than two standard errors of the evaluation set.
Warning: a plain linear model beats it clearly (by three standard errors and by a tenth of the linear
model's own gain over the majority baseline). The finding's evidence holds the whole table.
When it sees the symptom it tries one change at a time on a copy trained the same way (the first that
lifts the model out of the symptom names `evidence.cause`, with `verified_fix` before/after, and makes
the finding an error; CMP002 carries the same): classes resampled to equal frequency when they are
imbalanced (`class-imbalance`), the given trained model trained further (`training-length`, only with
`trained=True`: nndoctor's own copy's length is no fault of yours), a batch of 8 or fewer made 32
(`batch-size`, only when training four times as long at your batch size does not also remove it), a
hidden Linear of 2 units or fewer between wider layers widened (`architecture`: such a layer can nearly
memorise one batch, so only the whole set shows it).
""",
        why="""
A model can train without an error and still learn nothing useful. If it cannot beat always
predicting the most frequent class, something is broken: labels out of step with their inputs, a
layer that squeezes everything through one unit, a slice that drops the features. A deep model that
loses clearly to logistic regression on the same data is almost always wasting information.
""",
        example="""
perm = torch.randperm(len(x))
x, y = x[perm], y[torch.randperm(len(y))]                    # two permutations: labels no longer match
model = nn.Sequential(nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 1), nn.ReLU(), nn.Linear(1, 10))
""",
        fix="""
When no baseline beats the majority either, the targets are unrelated to the inputs: index inputs and
labels with the same permutation, check the label column. When the baselines do better, look for the
information the model throws away: widen a layer narrower than the number of outputs (the finding
names it), fix a slice or mask before the first layer, train longer.
""",
        ignore="""
When the task is known to be at chance level for every method, or the copy's training in nndoctor was
far too short for this model (pass your trained model with `Setup(trained=True)`).
""",
    ),
    Code(
        code="CMP002",
        name="input-independent",
        severity=E,
        summary="The model does as well with its inputs zeroed or shuffled: it ignores them.",
        what="""
The trained copy is evaluated again with every input tensor zeroed, and with the inputs shuffled
across samples (targets kept in place). Error: its outputs are the same for every sample; the finding
names the layer from which on nothing depends on the input (often the first layer, fed by code that
discarded the input). Warning: it scores as well with ablated inputs as with the real ones (within two
standard errors) although the baselines show the inputs carry signal.
""",
        why="""
A model that does not look at its inputs can only learn the label distribution. The loss still goes
down a little (to the entropy of the labels), so nothing looks broken.
""",
        example="""
self.register_buffer("mask", (x.std(0) > 1.0).float())   # inputs scaled to [0, 1]: the mask is all zeros
return self.net(x * self.mask)
""",
        fix="""
Follow the input through `forward` up to the layer the finding names: a mask that zeroes it, a slice
that keeps the wrong columns, a `.detach()` or a constant used in its place, an input that is never
passed on. Check that `model(x1) - model(x2)` is not zero for two different samples.
""",
        ignore="When the targets really do not depend on the inputs (then CMP001 says so too).",
    ),
    Code(
        code="CMP003",
        name="below-known-result",
        severity=W,
        summary="The model is below a known result, ranked by how trustworthy its source is.",
        what="""
Each `KnownResult` in `Setup.known_results` is compared with the model's score in the same metric
(accuracy, balanced accuracy, error rate, R², MSE, RMSE, MAE, or your `Setup.metric`), most trusted
source first: official-similar, official-benchmark, unofficial, paper, benchmark, similar-model. The
gap is measured as the share of the way from the majority baseline to the known result that is still
missing, after allowing two standard errors for noise. Error: far below (a quarter of the way or more)
an official implementation on similar data. Warning: clearly below it, or far below any other source.
A copy trained briefly by nndoctor is never more than a warning: pass `trained=True` with your trained
model for a fair comparison. With no known results, an info finding says which kind to look for first.
""",
        why="""
Simple baselines only catch gross failures. A result someone obtained with the same model on similar
data tells you how good yours should be, and the more trustworthy the source, the more a gap means a
bug rather than a difference in setup.
""",
        example="""
Setup(model=trained_model, trained=True, train_data=..., val_data=..., loss_fn=...,
      known_results=[KnownResult(metric="accuracy", value=0.97, source="official-similar")])
# your re-implementation reaches 0.23: a typo made the learning rate 1e-5
""",
        fix="""
Reproduce the known result's setup step by step (pre-processing, model, loss, optimizer, schedule,
training length) and find the first difference; for a re-implementation, compare it layer by layer
with the official model (`Setup(reference_model=...)`, CMP004).
""",
        ignore="""
When the known result comes from data or a budget that differ from yours so much that no match is
expected (benchmark and similar-model sources are only loose references).
""",
    ),
    Code(
        code="CMP004",
        name="reference-divergence",
        severity=E,
        summary="The model's activations first diverge from a reference implementation at this layer.",
        what="""
With `Setup(reference_model=...)` or `nndoctor.compare_models(model, reference, inputs)`, copies of both
run in eval mode on the same inputs. The reference's weights are first loaded into the copy of the
model where the state dicts map (by name, else by order and shape). Layers are matched by name, else
by order and output shape. The finding names the first layer whose inputs still agree with the
reference's while its outputs differ beyond the tolerance (relative 1e-3 of the reference's largest
value there), with the largest absolute and relative differences.
""",
        why="""
A re-implementation of a published model that is wrong in one place trains, and only ends up a few
points worse. Comparing activations with the official implementation on the same weights pins the
difference to one layer instead of weeks of guessing.
""",
        example="""
# official: fc1 -> GELU -> fc2; re-implementation: up -> ReLU -> down
report = nndoctor.compare_models(my_net, official_net, x[:16])
""",
        fix="""
Read the named layer's code side by side with the reference's: its configuration (activation,
epsilon, padding, bias), or, when the layer is a container whose sub-layers agree, the code between
them in its `forward` (a missing residual, scaling, transpose or mask). If weights were mapped by order
and the mapping is wrong, load them yourself and pass `load_weights=False`.
""",
        ignore="When the difference is intended (a deliberate change to the architecture).",
    ),
]
