"""Read the user's DATA for ``nndoctor init``.

Each kind of source has one loader, written as the source text of a ``load_data()`` function: the same
text goes into the written file and is run here to look at the data, so what init infers is exactly
what the file will read. Problems a user can fix (a missing file, an unknown column, an unreadable
format) raise ScaffoldError, which the command line prints as one line (exit 2).
"""
from __future__ import annotations

import csv
import os
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import numpy as np

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp")
MAX_IMAGE_SIDE = 64  # larger images are shrunk: a first model needs the signal, not the resolution


class ScaffoldError(Exception):
    """nndoctor init cannot read DATA: one clear line for the user."""


@dataclass
class Source:
    kind: str                     # npz | csv | images | function
    path: str                     # the file or folder (absolute)
    loader: str                   # source text of load_data() (uses the constants below)
    constants: dict[str, Any] = field(default_factory=dict)  # TARGET, IMAGE_MODE, ... written before it
    imports: tuple[str, ...] = ()  # modules load_data() needs beyond numpy
    description: str = ""
    x: Any = None
    y: Any = None


NPZ_LOADER = '''
def load_data():
    """The arrays x (inputs) and y (targets) stored in DATA."""
    with np.load(DATA) as data:
        return data["x"], data["y"]
'''

CSV_LOADER = '''
def load_data():
    """DATA as (features, target): TARGET is the target column, every other column a feature.

    Text columns become one indicator column per category; empty cells become NaN (missing), which
    Standardize below fills with the training mean.
    """
    with open(DATA, newline="") as f:
        rows = [row for row in csv.reader(f) if row]
    header = rows[0] if _as_numbers(rows[0]) is None else [str(i) for i in range(len(rows[0]))]
    rows = rows[1:] if header is rows[0] else rows
    columns = {name: [row[i] for row in rows] for i, name in enumerate(header)}
    target = columns.pop(TARGET)
    features = []
    for values in columns.values():
        numbers = _as_numbers(values)
        if numbers is None:  # a text column: one 0/1 indicator per category
            categories = sorted(set(values))
            numbers = np.array([[v == c for c in categories] for v in values], dtype=np.float64)
        features.append(numbers.reshape(len(rows), -1))
    numbers = _as_numbers(target)
    return np.hstack(features), (np.array(target) if numbers is None else numbers)


def _as_numbers(values):
    """The cells as floats (empty cells as NaN), or None when the column holds text."""
    try:
        return np.array([float(v) if v.strip() else np.nan for v in values])
    except ValueError:
        return None
'''

IMAGE_LOADER = '''
def load_data():
    """DATA/<class>/<image>: each subfolder is a class. Images are converted to IMAGE_MODE and resized to
    IMAGE_SIZE (width, height) so they stack into one array of shape (N, channels, height, width)."""
    from PIL import Image

    classes = sorted(d for d in os.listdir(DATA) if os.path.isdir(os.path.join(DATA, d)))
    x, y = [], []
    for label in classes:
        folder = os.path.join(DATA, label)
        for name in sorted(os.listdir(folder)):
            if not name.lower().endswith(IMAGE_SUFFIXES):
                continue
            with Image.open(os.path.join(folder, name)) as image:
                x.append(np.asarray(image.convert(IMAGE_MODE).resize(IMAGE_SIZE), dtype=np.float32))
            y.append(label)
    x = np.stack(x)
    x = x[:, None] if x.ndim == 3 else x.transpose(0, 3, 1, 2)
    return x, np.array(y)
'''

FUNCTION_LOADER = '''
def load_data():
    """What FUNCTION in SOURCE returns: a pair (x, y) of arrays or tensors, a dict with "x" and "y", or a
    Dataset of (x, y) pairs, as numpy arrays."""
    spec = importlib.util.spec_from_file_location("user_data", SOURCE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    data = getattr(module, FUNCTION)()
    if isinstance(data, dict):
        x, y = data["x"], data["y"]
    elif isinstance(data, (tuple, list)) and len(data) == 2 and not _is_pair(data):
        x, y = data
    else:  # a Dataset (or a list) of (x, y) pairs
        pairs = [data[i] for i in range(len(data))]
        x = np.stack([_array(p[0]) for p in pairs])
        y = np.stack([_array(p[1]) for p in pairs])
    return _array(x), _array(y)


def _is_pair(data):
    """True when data is one (x, y) sample rather than the pair (all x, all y)."""
    return np.ndim(_array(data[0])) == 0


def _array(value):
    return value.detach().cpu().numpy() if hasattr(value, "detach") else np.asarray(value)
'''


def open_source(data: str, target: str | None = None) -> Source:
    """Check DATA, build its loader, run it; ScaffoldError for anything the user must fix."""
    func = None
    if not os.path.exists(data) and ":" in data:
        data, _, func = data.rpartition(":")
    if not os.path.exists(data):
        raise ScaffoldError(f"data not found: {data}")
    path = os.path.abspath(data)
    if func is not None or path.endswith(".py"):
        if not path.endswith(".py"):
            raise ScaffoldError(f"{data}: give a Python file and a function as module.py:function")
        source = _function_source(path, func or "load_data")
    elif os.path.isdir(path):
        source = _image_source(path)
    elif path.lower().endswith(".npz"):
        source = Source("npz", path, NPZ_LOADER, description=f"arrays x and y from {data}")
    elif path.lower().endswith((".csv", ".tsv", ".txt")):
        source = _csv_source(path, target)
    else:
        raise ScaffoldError(f"cannot read {data}: give an .npz with arrays x and y, a .csv, a folder of images "
                            "by class, or module.py:function")
    if target is not None and source.kind != "csv":
        raise ScaffoldError("--target names a CSV column; DATA is not a CSV file")
    source.x, source.y = _run_loader(source, data)
    return source


def _csv_source(path: str, target: str | None) -> Source:
    try:
        with open(path, newline="") as f:
            first = next((row for row in csv.reader(f) if row), None)
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise ScaffoldError(f"cannot read {path} as CSV: {exc}") from None
    if first is None or len(first) < 2:
        raise ScaffoldError(f"{path}: a CSV needs at least two columns (features and a target)")
    has_header = _numbers(first) is None
    names = first if has_header else [str(i) for i in range(len(first))]
    chosen = names[-1] if target is None else target
    if chosen not in names:
        import difflib

        close = difflib.get_close_matches(chosen, names, n=3)
        hint = f"; did you mean {', '.join(close)}?" if close else f"; columns: {', '.join(names[:12])}"
        raise ScaffoldError(f"no column {chosen!r} in {path}{hint}")
    return Source("csv", path, CSV_LOADER, {"TARGET": chosen}, ("csv",),
                  f"{os.path.basename(path)}, target column {chosen!r}")


def _numbers(values: list[str]) -> list[float] | None:
    try:
        return [float(v) if v.strip() else float("nan") for v in values]
    except ValueError:
        return None


def _image_source(path: str) -> Source:
    try:
        from PIL import Image
    except ImportError:
        raise ScaffoldError(f"{path} is a folder: reading images needs Pillow (pip install pillow)") from None
    classes = sorted(d for d in os.listdir(path) if os.path.isdir(os.path.join(path, d)))
    files = [os.path.join(path, c, n) for c in classes for n in sorted(os.listdir(os.path.join(path, c)))
             if n.lower().endswith(IMAGE_SUFFIXES)]
    if len(classes) < 2 or not files:
        raise ScaffoldError(f"{path}: a folder of images needs one subfolder per class (at least two) with images")
    modes, sizes = Counter(), Counter()
    for name in files[:: max(1, len(files) // 50)]:  # a sample is enough to pick the mode and size
        try:
            with Image.open(name) as image:
                modes["L" if image.mode in ("1", "L", "I", "I;16", "F") else "RGB"] += 1
                sizes[image.size] += 1
        except OSError as exc:
            raise ScaffoldError(f"cannot read image {name}: {exc}") from None
    width, height = sizes.most_common(1)[0][0]
    scale = min(1.0, MAX_IMAGE_SIDE / max(width, height))
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    mode = "RGB" if modes["RGB"] else "L"
    return Source("images", path, IMAGE_LOADER, {"IMAGE_MODE": mode, "IMAGE_SIZE": size,
                                                 "IMAGE_SUFFIXES": IMAGE_SUFFIXES}, ("os",),
                  f"{len(files)} images in {len(classes)} class folders of {path}")


def _function_source(path: str, func: str) -> Source:
    return Source("function", path, FUNCTION_LOADER, {"FUNCTION": func}, ("importlib.util",),
                  f"{func}() in {os.path.basename(path)}")


def _run_loader(source: Source, shown: str) -> tuple[np.ndarray, np.ndarray]:
    """Run the loader text exactly as the written file will."""
    import csv as csv_module
    import importlib.util

    namespace: dict[str, Any] = {"np": np, "os": os, "csv": csv_module, "importlib": importlib,
                                 "DATA": source.path, "SOURCE": source.path, **source.constants}
    exec(compile(source.loader, f"<nndoctor init loader for {shown}>", "exec"), namespace)
    try:
        x, y = namespace["load_data"]()
    except KeyError as exc:
        raise ScaffoldError(f"{shown}: no {exc.args[0]!r} in it (expected arrays named x and y)") from None
    except AttributeError as exc:
        raise ScaffoldError(f"{shown}: {exc}") from None
    except Exception as exc:
        text = str(exc).strip().splitlines()
        raise ScaffoldError(f"cannot read {shown}: {type(exc).__name__}: {text[0] if text else ''}") from None
    x, y = np.asarray(x), np.asarray(y)
    if x.ndim < 2 or len(x) != len(y):
        raise ScaffoldError(f"{shown}: expected x of shape (samples, ...) and y with one target per sample, "
                            f"got x {tuple(x.shape)} and y {tuple(y.shape)}")
    if len(x) < 10:
        raise ScaffoldError(f"{shown}: only {len(x)} samples; a held-out split needs more")
    return x, y
