"""The human report in the terminal: findings grouped by playbook step, errors first, a verdict at the end.

Readable without colour (NO_COLOR, pipes, CI logs) and within 100 columns.
"""
from __future__ import annotations

import io
import sys
from typing import TextIO

from rich.console import Console
from rich.text import Text

from nndoctor import catalogue
from nndoctor.catalogue import Severity
from nndoctor.findings import Report

_STYLE = {Severity.ERROR: "bold red", Severity.WARNING: "yellow", Severity.INFO: "cyan"}
_LABEL = {Severity.ERROR: "error", Severity.WARNING: "warning", Severity.INFO: "info"}


def make_console(file: TextIO | None = None, width: int | None = None) -> Console:
    file = file or sys.stdout
    return Console(file=file, width=min(width or 100, 100), highlight=False, soft_wrap=False)


def print_report(report: Report, console: Console | None = None, title: str = "nndoctor") -> None:
    console = console or make_console()
    console.print(Text(f"{title}: {len(report.checks)} checks", style="bold"))
    by_step: dict[str, list] = {}
    for finding in report.sorted_findings():
        by_step.setdefault(finding.step, []).append(finding)
    for step, heading in catalogue.STEPS.items():
        findings = by_step.get(step, [])
        checks = [c for c in report.checks if c.step == step]
        if not findings and not checks:
            continue
        counts = _step_counts(checks)
        console.print()
        console.print(Text(f"{heading}", style="bold underline") + Text(f"  {counts}", style="dim"))
        if not findings:
            console.print(Text("  nothing found", style="green"))
        for f in findings:
            head = Text("  ")
            head.append(f"{f.code} {_LABEL[f.severity]}", style=_STYLE[f.severity])
            head.append(f"  {f.name}")
            if f.location:
                head.append(f"  at {f.location}", style="bold")
            console.print(head)
            console.print(Text(_indent(f.message, 4)))
            for s in f.suggestions:
                console.print(Text(_indent("fix: " + s, 4), style="green"))
            if f.severity != Severity.INFO:
                console.print(Text(_indent(f.hint, 4), style="dim"))
    crashed = [c for c in report.checks if c.status == "crashed"]
    if crashed:
        console.print()
        console.print(Text("nndoctor could not finish these checks (a bug in nndoctor, please report it):", style="magenta"))
        for c in crashed:
            console.print(Text(f"  {c.name}: {c.detail}", style="magenta"))
    skipped = [c for c in report.checks if c.status == "skipped" and c.detail != "not selected"]
    if skipped:
        console.print()
        console.print(Text(f"skipped {len(skipped)} checks:", style="dim"))
        for c in skipped:
            console.print(Text(f"  {c.name}: {c.detail}", style="dim"))
    console.print()
    console.print(verdict(report))


def verdict(report: Report) -> Text:
    errors, warnings = len(report.errors), len(report.warnings)
    seconds = report.meta.get("seconds")
    took = f" in {seconds:.1f} s" if isinstance(seconds, (int, float)) else ""
    if errors:
        codes = ", ".join(sorted({f.code for f in report.errors}))
        return Text(f"verdict: {errors} error(s), {warnings} warning(s){took} — fix first: {codes}", style="bold red")
    if warnings:
        return Text(f"verdict: no errors, {warnings} warning(s) worth a look{took}", style="bold yellow")
    return Text(f"verdict: no problems found{took}", style="bold green")


def _step_counts(checks: list) -> str:
    passed = sum(c.status == "passed" for c in checks)
    failed = sum(c.status == "failed" for c in checks)
    return f"{passed} passed, {failed} with findings" if checks else ""


def _indent(text: str, n: int) -> str:
    pad = " " * n
    return "\n".join(pad + line for line in str(text).splitlines())


def render_text(report: Report, width: int = 100) -> str:
    buf = io.StringIO()
    console = Console(file=buf, width=width, no_color=True, color_system=None, highlight=False)
    print_report(report, console)
    return buf.getvalue()
