"""The catalogue: every code nndoctor can emit, with its name, default severity and documentation.

One file per family (the code's prefix names the file: ``LOS001`` lives in ``catalogue/los.py``).
``nndoctor codes CODE`` prints exactly what is written there, so findings and docs never disagree.
This package imports nothing heavy: listing codes must not import torch.
"""
from __future__ import annotations

import difflib
import importlib
from dataclasses import dataclass
from enum import Enum


class Severity(str, Enum):
    ERROR = "error"
    WARNING = "warning"
    INFO = "info"

    @property
    def rank(self) -> int:
        return {"error": 0, "warning": 1, "info": 2}[self.value]


@dataclass(frozen=True)
class Code:
    """One catalogue entry. The documentation headings are fixed (ruff-style)."""

    code: str
    name: str
    severity: Severity
    summary: str  # one line, as in the public catalogue table
    what: str  # what it means
    why: str  # why it matters
    example: str  # a minimal buggy example (code)
    fix: str  # the fix (code or prose)
    ignore: str  # when it is safe to ignore

    @property
    def family(self) -> str:
        return self.code[:3]

    def doc(self) -> str:
        """The full documentation, as ``nndoctor codes CODE`` prints it."""
        return "\n".join(
            [
                f"{self.code} {self.name} (default severity: {self.severity.value})",
                "",
                self.summary,
                "",
                "What it means",
                _indent(self.what),
                "",
                "Why it matters",
                _indent(self.why),
                "",
                "Example",
                _indent(self.example),
                "",
                "Fix",
                _indent(self.fix),
                "",
                "When to ignore",
                _indent(self.ignore),
                "",
                f"Silence with `--ignore {self.code}`.",
            ]
        )


def _indent(text: str) -> str:
    return "\n".join("    " + line if line else "" for line in text.strip("\n").splitlines())


# family prefix -> (module, playbook step, title)
FAMILIES: dict[str, tuple[str, str, str]] = {
    "RUN": ("run", "run", "Get the model to run"),
    "SHP": ("shp", "bugs", "Tensor shapes"),
    "DAT": ("dat", "bugs", "Input pre-processing"),
    "LOS": ("los", "bugs", "Input to the loss"),
    "MOD": ("mod", "bugs", "Train/eval mode"),
    "NUM": ("num", "bugs", "Numerical instability"),
    "GRD": ("grd", "overfit", "Gradient flow"),
    "OFB": ("ofb", "overfit", "Overfit a single batch"),
    "CMP": ("cmp", "compare", "Compare to known results"),
    "DDP": ("ddp", "distributed", "Distributed training"),
    "EFF": ("eff", "efficiency", "Wasted compute"),
}

STEPS: dict[str, str] = {
    "run": "1. Get the model to run",
    "bugs": "2. The five common bugs",
    "overfit": "3. Overfit a single batch",
    "compare": "4. Compare to known results",
    "distributed": "Distributed training",
    "efficiency": "Wasted compute",
}


def _load() -> dict[str, Code]:
    codes: dict[str, Code] = {}
    for prefix, (module, _step, _title) in FAMILIES.items():
        try:
            mod = importlib.import_module(f"{__name__}.{module}")
        except ModuleNotFoundError as exc:  # a family still being written; test_catalogue fails on it
            if exc.name != f"{__name__}.{module}":
                raise
            continue
        for entry in mod.CODES:
            if not entry.code.startswith(prefix):
                raise RuntimeError(f"{entry.code} is declared in catalogue/{module}.py")
            if entry.code in codes:
                raise RuntimeError(f"{entry.code} is declared twice")
            codes[entry.code] = entry
    return codes


CODES: dict[str, Code] = _load()
BY_NAME: dict[str, Code] = {c.name: c for c in CODES.values()}


def get(code: str) -> Code:
    try:
        return CODES[code.upper()]
    except KeyError:
        raise KeyError(unknown_message(code)) from None


def step_of(code: str) -> str:
    return FAMILIES[code[:3]][1]


def unknown_message(token: str) -> str:
    close = difflib.get_close_matches(token.upper(), list(CODES) + list(FAMILIES), n=3, cutoff=0.5)
    close += difflib.get_close_matches(token.lower(), list(BY_NAME), n=3, cutoff=0.6)
    hint = f"; did you mean {', '.join(close)}?" if close else "; see `nndoctor codes`"
    return f"unknown code {token!r}{hint}"


def resolve(tokens: str | list[str] | None) -> set[str]:
    """Turn ``--select``/``--ignore`` tokens (codes, family prefixes or names) into a set of codes.

    Raises ``KeyError`` with the closest valid codes for a token that matches nothing.
    """
    if tokens is None:
        return set()
    if isinstance(tokens, str):
        tokens = [tokens]
    out: set[str] = set()
    for raw in tokens:
        for token in (t.strip() for t in raw.split(",")):
            if not token:
                continue
            up = token.upper()
            if up in CODES:
                out.add(up)
            elif up in FAMILIES:
                out.update(c for c in CODES if c.startswith(up))
            elif token.lower() in BY_NAME:
                out.add(BY_NAME[token.lower()].code)
            else:
                raise KeyError(unknown_message(token))
    return out
