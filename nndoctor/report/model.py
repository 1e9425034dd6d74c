"""Report: the findings of one run and the checks behind them, and its ways to show itself.

The views (terminal.py, html.py) take a Report and never import this module at runtime, so the
methods below can import them without an import circle.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from nndoctor import catalogue
from nndoctor._version import __version__
from nndoctor.catalogue import Severity
from nndoctor.findings import CheckRecord, Finding, jsonable


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
            "meta": jsonable(self.meta),
        }

    def to_json(self, indent: int | None = 2) -> str:
        return json.dumps(self.to_dict(), indent=indent, allow_nan=False)

    # The views load on first use: rich and the HTML templates stay out of `import nndoctor`.
    def to_html(self) -> str:
        from nndoctor.report.html import render

        return render(self)

    def to_text(self, width: int = 100) -> str:
        from nndoctor.report.terminal import render_text

        return render_text(self, width=width)

    def _repr_html_(self) -> str:
        """Jupyter shows a Report as its HTML page, framed so its styles cannot touch the notebook."""
        from nndoctor.report.html import render_frame

        return render_frame(self)

    def __str__(self) -> str:
        return self.to_text()

    def __repr__(self) -> str:
        return f"Report({len(self.errors)} errors, {len(self.warnings)} warnings, codes={sorted(self.codes())})"
