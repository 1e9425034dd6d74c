"""What the data is: the inputs' kind and shape, the task, the classes and their balance.

Targets: text or integer values with few distinct values are classes (two: binary); a 2-D 0/1 target
is multi-label; other numbers are regression. Inputs: a CSV is tabular; 4-D arrays and image folders
are images; 3-D arrays are images when both trailing sides look like an image, else sequences
(N, steps, features); 2-D non-negative integers with a large range and several columns are token ids.
``--task`` overrides either guess.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from nndoctor.scaffold.sources import ScaffoldError, Source

TARGET_TASKS = ("classification", "binary", "multilabel", "regression")
INPUT_KINDS = ("tabular", "image", "sequence")
TASK_CHOICES = TARGET_TASKS + INPUT_KINDS + ("multi-label",)
MAX_CLASSES = 50  # more distinct integer targets than this reads as a count or a measurement


@dataclass
class Profile:
    inputs: str               # tabular | image | sequence | tokens
    task: str                 # classification | binary | multilabel | regression
    n: int
    sample_shape: tuple       # one input as the model sees it (images channels-first)
    outputs: int              # width of the model's output
    layout: str = ""          # images: nchw | nhwc | nhw
    classes: tuple = ()       # class labels (classification) in label order
    counts: tuple = ()        # samples per class, or positives per label (multilabel)
    vocab: int = 0            # token ids: largest id + 1
    guessed: str = ""         # what a user may want to override, and how

    def lines(self) -> list[str]:
        """The profile as printed by init."""
        shape = self.sample_shape
        if self.inputs == "tabular":
            what = f"{shape[0]} tabular features"
        elif self.inputs == "image":
            what = f"images of {shape[0]} x {shape[1]} x {shape[2]} (channels, height, width)"
        elif self.inputs == "sequence":
            what = f"sequences of {shape[0]} steps x {shape[1]} features"
        else:
            what = f"token-id sequences of {shape[0]} steps, vocabulary {self.vocab}"
        out = [f"samples: {self.n}", f"inputs:  {what}", f"task:    {self._task()}"]
        if self.guessed:
            out.append(f"         ({self.guessed})")
        return out

    def _task(self) -> str:
        if self.task in ("classification", "binary"):
            share = ", ".join(f"{c}: {k}" for c, k in list(zip(self.classes, self.counts))[:10])
            more = ", ..." if len(self.classes) > 10 else ""
            lo, hi = min(self.counts), max(self.counts)
            note = f"; imbalanced ({hi / lo:.0f}:1), accuracy alone misleads" if hi >= 5 * lo else ""
            kind = "binary classification" if self.task == "binary" else "classification"
            return f"{kind}, {len(self.classes)} classes ({share}{more}){note}"
        if self.task == "multilabel":
            return f"multi-label, {self.outputs} labels (positives per label: {', '.join(map(str, self.counts[:10]))})"
        return f"regression, {self.outputs} target{'s' if self.outputs > 1 else ''}"


def infer_profile(source: Source, task: str | None = None) -> Profile:
    """The profile of the data ``source`` read; ``task`` (a TASK_CHOICES word) overrides one guess."""
    task = "multilabel" if task == "multi-label" else task
    x, y = source.x, source.y
    inputs, layout, guessed = _inputs(source, x, task if task in INPUT_KINDS else None)
    kind = task if task in TARGET_TASKS else _target_task(y)
    profile = Profile(inputs, kind, len(x), _sample_shape(x, inputs, layout), 1, layout, guessed=guessed)
    if kind in ("classification", "binary"):
        if y.ndim > 1 and y.shape[1:] != (1,):
            raise ScaffoldError(f"classification needs one label per sample; the targets have shape {tuple(y.shape)}")
        classes, counts = np.unique(y.reshape(len(y)), return_counts=True)
        if len(classes) < 2:
            raise ScaffoldError(f"the targets hold one value only ({classes[0]!r}): nothing to learn")
        profile.classes, profile.counts = tuple(c.item() for c in classes), tuple(int(k) for k in counts)
        profile.outputs = len(classes)
    elif kind == "multilabel":
        if y.ndim != 2 or not np.isin(y, (0, 1)).all():
            raise ScaffoldError(f"multi-label targets are a 0/1 array of shape (samples, labels); got {tuple(y.shape)}")
        profile.outputs, profile.counts = y.shape[1], tuple(int(k) for k in y.sum(0))
    else:
        if y.dtype.kind not in "biuf":
            raise ScaffoldError(f"regression needs numeric targets; these are {y.dtype}")
        profile.outputs = int(np.prod(y.shape[1:])) if y.ndim > 1 else 1
    if inputs == "tokens":
        profile.vocab = int(x.max()) + 1
    return profile


def _target_task(y: np.ndarray) -> str:
    if y.ndim == 2 and y.shape[1] > 1:
        return "multilabel" if np.isin(y, (0, 1)).all() else "regression"
    flat = y.reshape(len(y)) if y.ndim > 1 and y.shape[1:] == (1,) else y
    if flat.ndim > 1:
        raise ScaffoldError(f"targets of shape {tuple(y.shape)}: nndoctor init writes models with one target "
                            "(or one row of targets) per sample")
    if flat.dtype.kind in "USOb":
        return "binary" if len(np.unique(flat)) == 2 else "classification"
    if not np.isfinite(flat.astype(np.float64)).all():
        raise ScaffoldError("the targets contain NaN or infinite values; drop or fix those samples first")
    distinct = len(np.unique(flat))
    whole = bool(np.all(np.mod(flat, 1) == 0))
    if whole and distinct <= min(MAX_CLASSES, max(2, len(flat) // 5)):
        return "binary" if distinct == 2 else "classification"
    return "regression"


def _inputs(source: Source, x: np.ndarray, forced: str | None) -> tuple[str, str, str]:
    """(kind, image layout, a note on what was guessed)."""
    if x.dtype.kind not in "biuf":
        raise ScaffoldError(f"the inputs must be numbers; they are {x.dtype}")
    if source.kind == "csv" or forced == "tabular":
        return "tabular", "", ""
    if source.kind == "images":
        return "image", "nchw", ""
    if forced == "image" or (forced is None and x.ndim == 4):
        if x.ndim == 3:
            return "image", "nhw", ""
        if x.ndim != 4:
            raise ScaffoldError(f"images need inputs of shape (N, H, W) or (N, C, H, W); got {tuple(x.shape)}")
        channels_last = x.shape[1] not in (1, 3, 4) and x.shape[3] in (1, 3, 4)
        return "image", "nhwc" if channels_last else "nchw", ""
    if x.ndim == 2:
        integers = x.dtype.kind in "biu" or bool(np.all(np.mod(x, 1) == 0))
        tokens = integers and x.min() >= 0 and (x.max() >= 50 or forced == "sequence") and x.shape[1] >= 4
        if forced == "sequence" and not integers:
            return "sequence", "", ""  # one feature per step
        if tokens and (forced == "sequence" or (x.dtype.kind in "biu" and x.dtype != np.uint8)):  # bytes: pixels
            return "tokens", "", "" if forced else "guessed token ids from non-negative integers; --task tabular if they are features"
        return "tabular", "", ""
    if x.ndim == 3:
        side, other = sorted(x.shape[1:])
        if forced is None and side >= 8 and other <= 4 * side:
            return "image", "nhw", "read as one-channel images; --task sequence if they are (steps, features)"
        return "sequence", "", ""
    if forced == "sequence":
        raise ScaffoldError(f"sequences need inputs of shape (N, steps) or (N, steps, features); got {tuple(x.shape)}")
    raise ScaffoldError(f"inputs of shape {tuple(x.shape)}: expected (N, features), (N, steps, features) or images")


def _sample_shape(x: np.ndarray, inputs: str, layout: str) -> tuple:
    if inputs == "tabular":
        return (int(np.prod(x.shape[1:])),)
    if inputs == "image":
        shape = x.shape[1:]
        return (1, *shape) if layout == "nhw" else (shape[2], shape[0], shape[1]) if layout == "nhwc" else tuple(shape)
    if inputs == "sequence" and x.ndim == 2:
        return (x.shape[1], 1)
    return tuple(x.shape[1:])
