"""Finding, CheckRecord and Report: what nndoctor says, and the JSON it writes."""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any

from nndoctor import catalogue
from nndoctor._version import __version__
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
            "evidence": _jsonable(self.evidence),
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


@dataclass
class Report:
    findings: list[Finding] = field(default_factory=list)
    checks: list[CheckRecord] = field(default_factory=list)
    meta: dict[str, Any] = field(default_factory=dict)  # what was run: source, seconds, interrupted...

    def codes(self) -> set[str]:
        """Codes of the findings with severity error or warning."""
        return {f.code for f in self.findings if f.severity in (Severity.ERROR, Severity.WARNING)}

    def by_code(self, code: str) -> list[Finding]:
        return [f for f in self.findings if f.code == code]

    @property
    def errors(self) -> list[Finding]:
        return [f for f in self.findings if f.severity == Severity.ERROR]

    @property
    def warnings(self) -> list[Finding]:
        return [f for f in self.findings if f.severity == Severity.WARNING]

    @property
    def exit_code(self) -> int:
        return 1 if self.errors else 0

    def sorted_findings(self) -> list[Finding]:
        order = list(catalogue.STEPS)
        return sorted(self.findings, key=lambda f: (order.index(f.step), f.severity.rank, f.code))

    def filtered(self, select: set[str] | None = None, ignore: set[str] | None = None) -> "Report":
        keep = [
            f
            for f in self.findings
            if (not select or f.code in select) and not (ignore and f.code in ignore)
        ]
        return Report(findings=keep, checks=list(self.checks), meta=dict(self.meta))

    def to_dict(self) -> dict[str, Any]:
        return {
            "nndoctor_version": __version__,
            "findings": [f.to_dict() for f in self.sorted_findings()],
            "checks": [c.to_dict() for c in self.checks],
            "meta": _jsonable(self.meta),
        }

    def to_json(self, indent: int | None = 2) -> str:
        return json.dumps(self.to_dict(), indent=indent, allow_nan=False)

    def to_html(self) -> str:
        from nndoctor.report.html import render

        return render(self)

    def to_text(self, width: int = 100) -> str:
        from nndoctor.report.terminal import render_text

        return render_text(self, width=width)

    def __repr__(self) -> str:
        return f"Report({len(self.errors)} errors, {len(self.warnings)} warnings, codes={sorted(self.codes())})"


def _jsonable(value: Any) -> Any:
    """Evidence may hold numpy/torch scalars, tuples, non-finite floats: make it strict JSON."""
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set)):
        return [_jsonable(v) for v in value]
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    tolist = getattr(value, "tolist", None)  # numpy and torch scalars/arrays
    if callable(tolist):
        return _jsonable(tolist())
    return str(value)
