"""Classify an exception from the user's training step and find the user's source line.

Only measures: which kind of error (shape, dtype, device, memory, other), the phase, where, which entry of the
crash catalogue (``nndoctor.catalogue.crashes``) it is, and a search query for its message.
"""
from __future__ import annotations

import linecache
import os
import re
import traceback
from dataclasses import dataclass

import torch

from nndoctor.catalogue import crashes, search_query
from nndoctor.catalogue.crashes import KnownError

_SHAPE = re.compile(
    r"shapes cannot be multiplied|size of tensor a|must match the size|shape '\[.*\]' is invalid|"
    r"expected input\[.*\] to have \d+ channels|Expected input batch_size|Target size .* must be the same as input size|"
    r"Using a target size .* that is different to the input size|mat1 and mat2 shapes|"
    r"Expected \d+D \(unbatched\) or \d+D \(batched\) input|Expected .*D.* input|normalized_shape|"
    r"size mismatch|doesn't match the broadcast shape|not broadcastable|Given groups=\d+, weight of size|"
    r"Dimension out of range|Expected (?:2|3|4|5)D|input.size\(-1\) must be equal to input_size|"
    r"Sizes of tensors must match|expected sequence of length|Calculated padded input size|"
    r"Kernel size can't be greater than actual input size|output size is too small",
    re.IGNORECASE,
)
_DTYPE = re.compile(
    r"expected scalar type|same dtype|Found dtype|not implemented for '(?:Long|Int|Float|Double|Half|Bool|BFloat16|Byte)'|"
    r"Expected object of scalar type|should be the same|expected m1 and m2 to have the same dtype|"
    r"Expected tensor for argument .* to have one of the following scalar types|"
    r"Expected floating point type for target|only Tensors of floating point dtype can require gradients|"
    r"result type .* can't be cast|must have the same dtype",
    re.IGNORECASE,
)
_DEVICE = re.compile(
    r"Expected all tensors to be on the same device|on the same device|not on the expected device|device type|meta tensor|"
    r"is on the meta device|Cannot copy out of meta tensor|cuda.*cpu|cpu.*cuda|different devices",
    re.IGNORECASE,
)
_OOM = re.compile(r"out of memory|CUDA error: out of memory|DefaultCPUAllocator: can't allocate memory", re.IGNORECASE)
_TARGET_RANGE = re.compile(r"Target -?\d+ is out of bounds|target out of bounds|index -?\d+ is out of bounds for dimension", re.IGNORECASE)


@dataclass
class ErrorInfo:
    kind: str  # shape | dtype | device | memory | targets | other
    phase: str  # data | forward | loss | backward | step
    exc: BaseException
    source: str  # "file.py:12" of the user's code closest to the error, or ""
    source_line: str  # the text of that line
    known: KnownError | None = None  # the crash catalogue's entry for this message
    query: str = ""  # a search query for the message, the user's own numbers and names removed

    @property
    def summary(self) -> str:
        text = str(self.exc).strip().splitlines()[0] if str(self.exc).strip() else ""
        return f"{type(self.exc).__name__}: {text}"[:400]


def classify(exc: BaseException, phase: str) -> ErrorInfo:
    text = f"{type(exc).__name__}: {exc}"
    if isinstance(exc, torch.OutOfMemoryError) or _OOM.search(text):
        kind = "memory"
    elif _TARGET_RANGE.search(text) and phase == "loss":
        kind = "targets"
    elif _DEVICE.search(text) and "dtype" not in text.lower():
        kind = "device"
    elif _DTYPE.search(text) and not _SHAPE.search(text):
        kind = "dtype"
    elif _SHAPE.search(text):
        kind = "shape"
    else:
        kind = "other"
    source, line = user_frame(exc)
    known, query = known_error(exc)
    if kind == "other" and known is not None:  # e.g. 2.x's "expected target dtype to be Long" is a dtype error
        kind = crashes.KIND_OF.get(known.id, kind)
    return ErrorInfo(kind, phase, exc, source, line, known, query)


def known_error(exc: BaseException) -> tuple[KnownError | None, str]:
    """The crash catalogue's entry for ``exc`` (or None) and a search query for its message.

    An error raised ``from`` another (a framework wrapping PyTorch's) is looked up by its cause when its own
    message is unknown; the query always quotes the error the user saw.
    """
    message = str(exc)
    entry = crashes.match(message)
    if entry is None and exc.__cause__ is not None:
        entry = crashes.match(str(exc.__cause__))
    return entry, search_query.search_query(type(exc).__name__, message, entry)


_NNDOCTOR_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_LIB_DIRS = (os.path.dirname(torch.__file__), os.path.dirname(os.__file__), _NNDOCTOR_DIR)


def is_library_file(filename: str) -> bool:
    """True for torch, the standard library, installed packages and nndoctor itself."""
    fn = os.path.abspath(filename)
    return (
        fn.startswith(_LIB_DIRS)
        or f"{os.sep}site-packages{os.sep}" in fn
        or f"{os.sep}dist-packages{os.sep}" in fn
        or fn.startswith("<")
    )


def user_frame(exc: BaseException) -> tuple[str, str]:
    """The innermost traceback frame in the user's code: ("path:line", "source text")."""
    frames = [f for f in traceback.extract_tb(exc.__traceback__) if not is_library_file(f.filename)]
    if not frames:
        return "", ""
    f = frames[-1]
    return f"{short_path(f.filename)}:{f.lineno}", (f.line or "").strip()


def user_call_site(frame) -> tuple[str, str]:
    """Walking out from ``frame``: ("file.py:12", text) of the first frame in the user's code, or ("", "")
    when library code was called straight from nndoctor (an ``nn.MSELoss`` used as ``loss_fn``)."""
    while frame is not None:
        filename = frame.f_code.co_filename
        if os.path.abspath(filename).startswith(_NNDOCTOR_DIR):
            return "", ""
        if not is_library_file(filename):
            return f"{short_path(filename)}:{frame.f_lineno}", linecache.getline(filename, frame.f_lineno).strip()
        frame = frame.f_back
    return "", ""


def short_path(filename: str) -> str:
    try:
        rel = os.path.relpath(filename)
        return rel if not rel.startswith("..") else filename
    except ValueError:
        return filename


def exception_only(exc: BaseException) -> str:
    return "".join(traceback.format_exception_only(type(exc), exc)).strip()
