"""Finding and CheckRecord: what nndoctor says and what each check did (core: imports only the catalogue).

The Report that gathers them lives in nndoctor/report/model.py."""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from nndoctor import catalogue
from nndoctor.catalogue import Severity


@dataclass
class Finding:
    code: str
    message: str
    location: str = ""
    evidence: dict[str, Any] = field(default_factory=dict)
    suggestions: list[str] = field(default_factory=list)
    severity: Severity | None = None  # None: the code's default severity
    title: str = ""  # None/empty: the code's summary

    def __post_init__(self) -> None:
        entry = catalogue.get(self.code)  # raises on an unknown code: a bug in nndoctor
        self.code = entry.code
        self.severity = Severity(self.severity or entry.severity)
        self.title = self.title or entry.summary

    @property
    def name(self) -> str:
        return catalogue.get(self.code).name

    @property
    def step(self) -> str:
        return catalogue.step_of(self.code)

    @property
    def hint(self) -> str:
        return f"silence with `--ignore {self.code}`; details: `nndoctor codes {self.code}`"

    def to_dict(self) -> dict[str, Any]:
        return {
            "code": self.code,
            "name": self.name,
            "severity": self.severity.value,
            "title": self.title,
            "message": self.message,
            "location": self.location,
            "evidence": jsonable(self.evidence),
            "suggestions": list(self.suggestions),
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Finding":
        """The inverse of ``to_dict`` (findings travel between ranks as JSON)."""
        return cls(d["code"], d["message"], d.get("location", ""), dict(d.get("evidence", {})),
                   list(d.get("suggestions", [])), Severity(d["severity"]) if d.get("severity") else None,
                   d.get("title", ""))


@dataclass
class CheckRecord:
    """What happened to one check: passed (found nothing), failed (found something), skipped, crashed."""

    name: str
    status: str  # passed | failed | skipped | crashed
    seconds: float = 0.0
    detail: str = ""
    step: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "status": self.status,
            "seconds": round(self.seconds, 4),
            "detail": self.detail,
            "step": self.step,
        }


def jsonable(value: Any) -> Any:
    """Evidence may hold numpy/torch scalars, tuples, non-finite floats: make it strict JSON."""
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set)):
        return [jsonable(v) for v in value]
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    tolist = getattr(value, "tolist", None)  # numpy and torch scalars/arrays
    if callable(tolist):
        return jsonable(tolist())
    return str(value)
