"""Write the setup file: plain text templates, filled per model family and framework.

The written file must read like a careful engineer wrote it: constants with why, one loader, a split
and standardisation fitted on the training split only, a small model, setup() for ``nndoctor check``
and a ``__main__`` block that trains and prints train/val metrics against the simplest baseline.
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass
from textwrap import indent

from nndoctor.scaffold.infer import Profile
from nndoctor.scaffold.models import KERAS_LAYERS, KERAS_WHY, TORCH_MODELS
from nndoctor.scaffold.sources import ScaffoldError, Source

TARGET_STEPS = 600   # optimizer steps the first run aims for: enough for a small model to fit small data
MAX_EPOCHS = 100
FRAMEWORKS = ("torch", "lightning", "keras")


@dataclass
class Written:
    path: str
    framework: str
    profile: Profile
    source: Source
    epochs: int
    batch_size: int
    n_train: int


def write_setup_file(path: str, source: Source, profile: Profile, framework: str = "torch") -> Written:
    import importlib.util

    if framework != "torch" and importlib.util.find_spec(framework) is None:
        raise ScaffoldError(f"--framework {framework}: {framework} is not installed (pip install {framework})")
    n_train = profile.n - round(profile.n * 0.2)
    batch_size = 32 if n_train < 2000 else 64
    epochs = max(5, min(MAX_EPOCHS, math.ceil(TARGET_STEPS / max(1, math.ceil(n_train / batch_size)))))
    written = Written(os.path.abspath(path), framework, profile, source, epochs, batch_size, n_train)
    text = render(written)
    compile(text, path, "exec")  # a template bug must never reach the user's disk
    with open(path, "w") as f:
        f.write(text)
    return written


# ----- the file, section by section -------------------------------------------------------------------
def render(w: Written) -> str:
    parts = [_docstring(w), _imports(w), _constants(w), w.source.loader.strip("\n"), STANDARDIZE, SPLIT,
             _prepare(w), _model(w), _task_functions(w)]
    if w.framework == "lightning":
        parts.append(LIGHTNING_MODULE)
    parts += [_setup(w), _main(w)]
    head, rest = parts[0], parts[1:]
    return head + "\n\n" + "\n\n\n".join(p.strip("\n") for p in rest) + "\n"


def _docstring(w: Written) -> str:
    name = os.path.basename(w.path)
    family = {"tabular": "an MLP", "image": "a small CNN", "sequence": "a small GRU", "tokens": "a small GRU"}
    framework = {"torch": "PyTorch", "lightning": "Lightning", "keras": "Keras 3 (torch backend)"}
    lines = "\n".join(w.profile.lines())
    return f'''"""A deliberately lightweight first model, written by `nndoctor init`: {family[w.profile.inputs]} in {framework[w.framework]}.

Data: {w.source.description}
{lines}

Start here: make this train and beat the simple baselines, then add complexity one piece at a time
(a bigger model, augmentation, regularisation, a schedule) and run `nndoctor check {name}` after each.

    python {name}            # train, print train/val metrics and the baseline to beat
    nndoctor check {name}    # run the troubleshooting playbook on setup()
"""'''


def _imports(w: Written) -> str:
    stdlib = sorted({"os", *w.source.imports} | ({"os"} if w.framework == "keras" else set()))
    lines = [f"import {m}" for m in stdlib] + [""]
    if w.framework == "lightning":
        lines += ["import lightning as L", "import numpy as np", "import torch", "from torch import nn",
                  "from torch.utils.data import DataLoader, TensorDataset", "", "import nndoctor",
                  "from nndoctor.integrations.lightning import NNDoctorCallback"]
    elif w.framework == "keras":
        lines = [f"import {m}" for m in stdlib] + [
            "", 'os.environ.setdefault("KERAS_BACKEND", "torch")  # before keras is imported: its models are torch modules',
            "", "import keras", "import numpy as np", "import torch", "from torch import nn", "", "import nndoctor",
            "from nndoctor.integrations.keras import NNDoctorCallback"]
    else:
        lines += ["import numpy as np", "import torch", "from torch import nn", "", "import nndoctor"]
    return "\n".join(lines)


def _data_path(w: Written) -> str:
    here = os.path.dirname(w.path)
    rel = os.path.relpath(w.source.path, here)
    if not rel.startswith(".."):
        return f"DATA = os.path.join(os.path.dirname(os.path.abspath(__file__)), {rel!r})  # next to this file"
    return f"DATA = {w.source.path!r}"


def _constants(w: Written) -> str:
    p = w.profile
    lines = [_data_path(w)]
    if w.source.kind == "function":
        lines = [_data_path(w).replace("DATA =", "SOURCE =", 1), "DATA = SOURCE"]
    for name, value in w.source.constants.items():
        lines.append(f"{name} = {value!r}")
    lines.append("")
    lines.append("SEED = 0             # one seed for the split, the initial weights and the batch order: reruns match")
    lines.append("VAL_FRACTION = 0.2   # held out and never trained on: the honest estimate of generalisation")
    lines.append(f"BATCH_SIZE = {w.batch_size}")
    steps = w.epochs * math.ceil(w.n_train / w.batch_size)
    lines.append(f"EPOCHS = {w.epochs:<12}# {steps} optimizer steps on this data: enough for a small model to fit")
    lines.append("LEARNING_RATE = 1e-3  # Adam's usual default: reliable for small models on standardised inputs")
    s = p.sample_shape
    if p.inputs == "tabular":
        shape = f"FEATURES = {s[0]}"
    elif p.inputs == "image":
        shape = f"CHANNELS, HEIGHT, WIDTH = {s[0]}, {s[1]}, {s[2]}"
    elif p.inputs == "sequence":
        shape = f"STEPS, FEATURES = {s[0]}, {s[1]}"
    else:
        shape = f"STEPS = {s[0]}\nVOCAB_SIZE = {p.vocab}  # largest token id + 1"
    lines += ["", shape, f"OUTPUTS = {p.outputs}  # {_outputs_note(p)}"]
    return "\n".join(lines)


def _outputs_note(p: Profile) -> str:
    if p.task in ("classification", "binary"):
        return "one score (logit) per class"
    if p.task == "multilabel":
        return "one score (logit) per label"
    return "one value per regression target"


STANDARDIZE = '''
class Standardize:
    """Zero mean, unit spread per feature, with statistics of the training split only: fitted on all the
    data, the validation score would quietly include what the model must not see. Missing values (NaN)
    become 0, the training mean."""

    def __init__(self, axes):
        self.axes = axes  # the axes averaged over: samples, and positions that share a feature

    def fit(self, x):
        self.mean = np.nanmean(x, axis=self.axes, keepdims=True)
        std = np.nanstd(x, axis=self.axes, keepdims=True)
        self.std = np.where(std > 0, std, 1.0)  # constant features stay 0 rather than dividing by zero
        return self

    def __call__(self, x):
        return np.nan_to_num((x - self.mean) / self.std).astype(np.float32)
'''

SPLIT = '''
def split(y, stratify):
    """Indices (train, val) of a fixed-seed random split; stratified, every class keeps its share in both."""
    rng = np.random.default_rng(SEED)
    groups = [np.flatnonzero(y == c) for c in np.unique(y)] if stratify else [np.arange(len(y))]
    train, val = [], []
    for idx in groups:
        idx = rng.permutation(idx)
        n_val = int(round(len(idx) * VAL_FRACTION))
        val.append(idx[:n_val])
        train.append(idx[n_val:])
    # Training samples in random order: setup() hands nndoctor tensors, batched as they come, and
    # data sorted by class would give single-class batches.
    return rng.permutation(np.concatenate(train)), np.sort(np.concatenate(val))
'''


def _prepare(w: Written) -> str:
    p = w.profile
    body = ["x, y = load_data()"]
    if p.inputs == "image" and p.layout == "nhw":
        body.append("x = x[:, None]  # (N, height, width) -> (N, 1, height, width): one channel")
    elif p.inputs == "image" and p.layout == "nhwc":
        body.append("x = x.transpose(0, 3, 1, 2)  # channels last -> channels first, as torch's Conv2d expects")
    elif p.inputs == "sequence" and len(p.sample_shape) == 2 and p.sample_shape[1] == 1:
        body.append("x = x.reshape(len(x), -1, 1)  # one feature per step")
    elif p.inputs == "tabular":
        body.append("x = x.reshape(len(x), -1).astype(np.float64)")
    if p.task in ("classification", "binary"):
        body.append("classes, y = np.unique(y.reshape(len(y)), return_inverse=True)  # labels -> 0..C-1, sorted")
        body.append("train, val = split(y, stratify=True)")
        y_train, y_val = "torch.tensor(y[train], dtype=torch.long)", "torch.tensor(y[val], dtype=torch.long)"
    elif p.task == "multilabel":
        body.append("y = y.astype(np.float32)  # 0/1 per label, as BCEWithLogitsLoss expects")
        body.append("train, val = split(y, stratify=False)")
        y_train, y_val = "torch.tensor(y[train])", "torch.tensor(y[val])"
    else:
        body.append("y = y.reshape(len(y), -1).astype(np.float64)  # (N, targets): the same shape as the outputs")
        body.append("train, val = split(y, stratify=False)")
        body.append("# Targets standardised too, with training statistics: the last layer starts at the right scale.")
        body.append("target_scale = Standardize(axes=(0,)).fit(y[train])")
        body.append("y = target_scale(y)")
        y_train, y_val = "torch.tensor(y[train])", "torch.tensor(y[val])"
    if p.inputs == "tokens":
        body.append("# Token ids are categories, not magnitudes: they go to an embedding unscaled.")
        body.append("x = torch.tensor(x.astype(np.int64))")
        x_train, x_val = "x[train]", "x[val]"
    else:
        axes = {"tabular": "(0,)", "image": "(0, 2, 3)", "sequence": "(0, 1)"}[p.inputs]
        why = {"tabular": "per feature", "image": "per channel, over all pixels", "sequence": "per feature, over all steps"}
        body.append(f"scale = Standardize(axes={axes}).fit(x[train])  # {why[p.inputs]}")
        x_train, x_val = "torch.tensor(scale(x[train]))", "torch.tensor(scale(x[val]))"
    body.append(f"return ({x_train}, {y_train},\n        {x_val}, {y_val})")
    return ('def prepare():\n    """(x_train, y_train, x_val, y_val) as tensors: split, targets encoded, inputs '
            'standardised."""\n' + indent("\n".join(body), "    "))


# ----- the models -----------------------------------------------------------------------------------
def _model(w: Written) -> str:
    kind = w.profile.inputs
    if w.framework != "keras":
        return TORCH_MODELS[kind]
    body = indent(KERAS_LAYERS[kind] + "\nlayers.Dense(OUTPUTS),  # no activation: the loss takes raw scores (from_logits)",
                  " " * 8)
    return f'''
def build_model():
    """{KERAS_WHY[kind]}.

    Lightweight on purpose: it trains in seconds and sets the bar anything bigger must beat. No dropout,
    augmentation or weight decay yet: add them one at a time once this one fits.
    On the torch backend a Keras model is a torch.nn.Module, so `nndoctor check` can work on it too."""
    layers = keras.layers
    keras.utils.set_random_seed(SEED)
    return keras.Sequential([
{body}
    ])
'''


# ----- loss, optimizer, metric -----------------------------------------------------------------------
TASK_FUNCTIONS = {
    "classification": ('nn.CrossEntropyLoss()  # softmax + log-likelihood in one stable step, on raw scores',
                       "accuracy", "majority class",
                       '''
def score(outputs, targets):
    """Accuracy: the share of samples whose highest score is the true class."""
    return (outputs.argmax(1) == targets).float().mean().item()


def baseline_score(y_train, y_val):
    """Accuracy of always predicting the most common training class: the first bar to clear."""
    return (y_val == torch.bincount(y_train).argmax()).float().mean().item()
'''),
    "multilabel": ('nn.BCEWithLogitsLoss()  # one sigmoid + log-likelihood per label, stable on raw scores',
                   "label_accuracy", "each label's majority value",
                   '''
def score(outputs, targets):
    """Label accuracy: the share of (sample, label) pairs predicted right (score > 0 means present)."""
    return ((outputs > 0).float() == targets).float().mean().item()


def baseline_score(y_train, y_val):
    """Label accuracy of predicting each label's most common training value: the first bar to clear."""
    return ((y_train.mean(0) > 0.5).float() == y_val).float().mean().item()
'''),
    "regression": ('nn.MSELoss()  # outputs and targets have the same shape (N, OUTPUTS): no broadcasting',
                   "r2", "predicting the training mean",
                   '''
def score(outputs, targets):
    """R^2: 1 minus the squared error relative to predicting the mean of these targets (1 is perfect)."""
    return (1 - ((outputs - targets) ** 2).sum() / ((targets - targets.mean(0)) ** 2).sum()).item()


def baseline_score(y_train, y_val):
    """R^2 of always predicting the training mean: the first bar to clear (about 0)."""
    return score(y_train.mean(0).expand_as(y_val), y_val)
'''),
}
KERAS_LOSSES = {
    "classification": "keras.losses.SparseCategoricalCrossentropy(from_logits=True)",
    "multilabel": "keras.losses.BinaryCrossentropy(from_logits=True)",
    "regression": 'keras.losses.MeanSquaredError()',
}


def _task_kind(p: Profile) -> str:
    return "classification" if p.task == "binary" else p.task


def _task_functions(w: Written) -> str:
    loss, metric, baseline, functions = TASK_FUNCTIONS[_task_kind(w.profile)]
    head = f'METRIC = "{metric}"\nBASELINE = "{baseline}"'
    why_binary = ("\n# Two classes as two scores with cross-entropy: the same as one sigmoid score, with one code path"
                  " for any number of classes." if w.profile.task == "binary" else "")
    return f'''
{head}{why_binary}


def make_loss():
    return {loss}


def make_optimizer(params):
    """Adam adapts each parameter's step size: the most forgiving first choice. No weight decay yet."""
    return torch.optim.Adam(params, lr=LEARNING_RATE)

{functions}'''


# ----- setup() and __main__ ---------------------------------------------------------------------------
def _setup(w: Written) -> str:
    task = {"binary": "classification"}.get(w.profile.task, w.profile.task)
    model = {"torch": "Model()", "lightning": "LitModel()", "keras": "build_model()"}[w.framework]
    why = ("\n    The Keras model is the torch module it is on this backend; make_loss() is the same objective\n"
           "    as the Keras loss in the training block.\n    " if w.framework == "keras" else "")
    return f'''
def setup():
    """What `nndoctor check` runs: the same model, data, loss and optimizer as the training below.{why}"""
    torch.manual_seed(SEED)
    x_train, y_train, x_val, y_val = prepare()
    return nndoctor.Setup(
        model={model},
        train_data=(x_train, y_train),
        val_data=(x_val, y_val),
        loss_fn=make_loss(),
        optimizer=make_optimizer,  # a factory, so each experiment starts from a fresh optimizer
        batch_size=BATCH_SIZE,
        task="{task}",
    )
'''


LIGHTNING_MODULE = '''
class LitModel(L.LightningModule):
    """Model as a LightningModule: Lightning runs the loop. It is still an nn.Module, so setup() hands it
    to `nndoctor check` as it is."""

    def __init__(self):
        super().__init__()
        self.model = Model()
        self.loss_fn = make_loss()

    def forward(self, x):
        return self.model(x)

    def training_step(self, batch, batch_idx):
        x, y = batch
        return self.loss_fn(self(x), y)

    def configure_optimizers(self):
        return make_optimizer(self.parameters())
'''

TORCH_MAIN = '''
def evaluate(model, x, y):
    model.eval()  # evaluation mode, whatever layers are added later (dropout, batch norm)
    with torch.no_grad():
        return score(model(x), y)


def train(model, x_train, y_train, x_val, y_val):
    """A plain loop: EPOCHS passes over the training split in shuffled mini-batches."""
    loss_fn, optimizer = make_loss(), make_optimizer(model.parameters())
    order = torch.Generator().manual_seed(SEED)
    for epoch in range(1, EPOCHS + 1):
        model.train()
        for batch in torch.randperm(len(x_train), generator=order).split(BATCH_SIZE):
            optimizer.zero_grad()
            loss = loss_fn(model(x_train[batch]), y_train[batch])
            loss.backward()
            optimizer.step()
        if epoch % max(1, EPOCHS // 5) == 0 or epoch == EPOCHS:
            print(f"epoch {epoch:3d}  loss {loss.item():.4f}  "
                  f"train {METRIC} {evaluate(model, x_train, y_train):.4f}  val {METRIC} {evaluate(model, x_val, y_val):.4f}")


if __name__ == "__main__":
    torch.manual_seed(SEED)
    x_train, y_train, x_val, y_val = prepare()
    model = Model()
    train(model, x_train, y_train, x_val, y_val)
    print(f"val {METRIC} {evaluate(model, x_val, y_val):.4f} (baseline, {BASELINE}: {baseline_score(y_train, y_val):.4f})")
'''

LIGHTNING_MAIN = '''
def evaluate(model, x, y):
    model.eval()
    with torch.no_grad():
        return score(model(x), y)


if __name__ == "__main__":
    torch.manual_seed(SEED)
    x_train, y_train, x_val, y_val = prepare()
    model = LitModel()
    doctor = NNDoctorCallback()  # watches every step of fit(); doctor.report() after training
    trainer = L.Trainer(max_epochs=EPOCHS, accelerator="cpu", callbacks=[doctor], logger=False,
                        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False)
    trainer.fit(model, DataLoader(TensorDataset(x_train, y_train), batch_size=BATCH_SIZE, shuffle=True))
    print(f"train {METRIC} {evaluate(model, x_train, y_train):.4f}")
    print(f"val {METRIC} {evaluate(model, x_val, y_val):.4f} (baseline, {BASELINE}: {baseline_score(y_train, y_val):.4f})")
    print(doctor.report())
'''


def _keras_main(w: Written) -> str:
    loss = KERAS_LOSSES[_task_kind(w.profile)]
    return f'''
def evaluate(model, x, y):
    return score(torch.as_tensor(model.predict(x.numpy(), verbose=0)), y)


if __name__ == "__main__":
    x_train, y_train, x_val, y_val = prepare()
    model = build_model()
    model.compile(optimizer=keras.optimizers.Adam(LEARNING_RATE),
                  loss={loss})
    doctor = NNDoctorCallback()  # watches every step of fit(); doctor.report() after training
    model.fit(x_train.numpy(), y_train.numpy(), batch_size=BATCH_SIZE, epochs=EPOCHS,
              validation_data=(x_val.numpy(), y_val.numpy()), callbacks=[doctor], verbose=0)
    print(f"train {{METRIC}} {{evaluate(model, x_train, y_train):.4f}}")
    print(f"val {{METRIC}} {{evaluate(model, x_val, y_val):.4f}} (baseline, {{BASELINE}}: {{baseline_score(y_train, y_val):.4f}})")
    print(doctor.report())
'''


def _main(w: Written) -> str:
    if w.framework == "lightning":
        return LIGHTNING_MAIN
    if w.framework == "keras":
        return _keras_main(w)
    return TORCH_MAIN
