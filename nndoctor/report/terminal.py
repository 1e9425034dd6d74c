"""The human report in the terminal: findings grouped by playbook step, errors first, a verdict at the end.

Layout (every line at most 100 columns; long messages and paths wrap with a hanging indent)::

    2. The five common bugs  (9 checks ran, 1 skipped)
      ERROR    LOS001 probabilities-to-logit-loss
               where: model.3
               The model's outputs are probabilities ... (the numbers)
               fix: Remove the final nn.Softmax ...
               silence with `--ignore LOS001`; details: `nndoctor codes LOS001`
      info     OFB000 overfit-ok: ...

    verdict: fix 1 error first (LOS001); 0 warnings in 4.5 s

Severity is spelled out, so the report reads the same without colour: rich drops colour by itself
when ``NO_COLOR`` is set or the output is not a terminal (pipes, CI logs). Symbols are ASCII only.
"""
from __future__ import annotations

import io
import sys
from typing import TYPE_CHECKING, TextIO

from rich.console import Console
from rich.text import Text

from nndoctor import catalogue
from nndoctor.catalogue import Severity
from nndoctor.findings import CheckRecord, Finding

if TYPE_CHECKING:  # a view takes a Report; model.py imports the views, never the other way
    from nndoctor.report.model import Report

MAX_WIDTH = 100
LABEL_WIDTH = 9  # "WARNING" and two spaces: finding bodies align under the code
_STYLE = {Severity.ERROR: "bold red", Severity.WARNING: "bold yellow", Severity.INFO: "cyan"}
_LABEL = {Severity.ERROR: "ERROR", Severity.WARNING: "WARNING", Severity.INFO: "info"}


def make_console(file: TextIO | None = None, width: int | None = None) -> Console:
    """A console at most 100 columns wide (narrower when the terminal is); 100 for pipes and logs."""
    file = file or sys.stdout
    console = Console(file=file, highlight=False, soft_wrap=False)
    available = console.width if console.is_terminal else MAX_WIDTH
    console.width = min(width or available, MAX_WIDTH)
    return console


def print_report(report: Report, console: Console | None = None, title: str = "nndoctor") -> None:
    console = console or make_console()
    seconds = report.meta.get("seconds")
    took = f" in {seconds:.1f} s" if isinstance(seconds, (int, float)) else ""
    counted = f"{_count(len(report.checks), 'check')}{took}" if report.checks else took.strip()
    _line(console, Text(title, style="bold") + Text(f"  ({counted})" if counted else "", style="dim"))
    by_step: dict[str, list[Finding]] = {}
    for finding in report.sorted_findings():
        by_step.setdefault(finding.step, []).append(finding)
    for step, heading in catalogue.STEPS.items():
        findings = by_step.get(step, [])
        checks = [c for c in report.checks if c.step == step]
        if not findings and not any(c.status != "skipped" or c.detail != "not selected" for c in checks):
            continue
        console.print()
        counts = step_counts(checks)
        _line(console, Text(heading, style="bold underline") + Text(f"  ({counts})" if counts else "", style="dim"))
        # a step with no checks of its own (the live EFF info) is said by its findings alone
        if not any(f.severity != Severity.INFO for f in findings) and (checks or not findings):
            _line(console, _step_status(checks))
        for finding in findings:
            _print_finding(console, finding)
    _print_unfinished(console, report.checks)
    console.print()
    _line(console, verdict(report))


def _step_status(checks: list[CheckRecord]) -> Text:
    """The line under a step with no problem: did its checks actually run?"""
    if any(c.status in ("passed", "failed") for c in checks):
        return Text("  ok: nothing wrong found", style="green")
    if any(c.status == "crashed" for c in checks):
        return Text("  not checked: nndoctor could not finish its checks (see below)", style="magenta")
    return Text("  not checked (see the skipped checks below)", style="dim")


def _print_finding(console: Console, f: Finding) -> None:
    label = Text("  ") + Text(f"{_LABEL[f.severity]:<{LABEL_WIDTH}}", style=_STYLE[f.severity])
    pad = Text(" " * len(label))
    if f.severity == Severity.INFO:  # measurements and passed steps: one compact paragraph
        where = f" (at {f.location})" if f.location else ""
        _wrap(console, label, Text(f"{f.code} {f.name}{where}: ", style="bold") + Text(f.message))
        return
    _wrap(console, label, Text(f"{f.code} {f.name}", style="bold"))
    if f.location:
        _wrap(console, pad + "where: ", Text(f.location, style="bold"))
    _wrap(console, pad, Text(f.message))
    for suggestion in f.suggestions:
        search = suggestion.startswith("Search: ")  # a crash's search query (checks/run.py), not a fix
        _wrap(console, pad + Text("search: " if search else "fix: ", style="green"),
              Text(suggestion[len("Search: "):] if search else suggestion))
    _wrap(console, pad, Text(f.hint, style="dim"))


def _print_unfinished(console: Console, checks: list[CheckRecord]) -> None:
    crashed = [c for c in checks if c.status == "crashed"]
    if crashed:
        console.print()
        _line(console, Text("nndoctor could not finish these checks (a bug in nndoctor, please report it):",
                            style="magenta"))
        for c in crashed:
            _wrap(console, Text("  - "), Text(f"{c.name}: {c.detail}", style="magenta"))
    skipped = [c for c in checks if c.status == "skipped" and c.detail != "not selected"]
    if skipped:
        console.print()
        _line(console, Text(f"skipped {len(skipped)} check(s):", style="dim"))
        by_reason: dict[str, list[str]] = {}  # one line per reason: a stop early in the playbook skips many
        for c in skipped:
            by_reason.setdefault(c.detail, []).append(c.name)
        for reason, names in by_reason.items():
            _wrap(console, Text("  - "), Text(f"{', '.join(names)}: {reason}", style="dim"))


def verdict(report: Report) -> Text:
    """The one-line summary printed last: what to do first."""
    errors, warnings = report.errors, report.warnings
    seconds = report.meta.get("seconds")
    took = f" in {seconds:.1f} s" if isinstance(seconds, (int, float)) else ""
    unfinished = sum(c.status == "crashed" for c in report.checks)
    note = f"; {_count(unfinished, 'unfinished check')}" if unfinished else ""
    if errors:
        return Text(f"verdict: fix {_count(len(errors), 'error')} first ({_codes(errors)}); "
                    f"{_count(len(warnings), 'warning')}{took}{note}", style="bold red")
    if warnings:
        return Text(f"verdict: no errors, {_count(len(warnings), 'warning')} worth a look ({_codes(warnings)})"
                    f"{took}{note}", style="bold yellow")
    if report.checks and not any(c.status in ("passed", "failed") for c in report.checks):
        return Text(f"verdict: nothing was checked{took}{note} (see above why)", style="bold magenta")
    return Text(f"verdict: no problems found{took}{note}", style="bold green")


def step_counts(checks: list[CheckRecord]) -> str:
    """'9 checks ran, 1 skipped' for the checks of one step (unselected ones left out).

    Ran, not passed: a check may report under another step (step 1 finds invalid targets, DAT003).
    """
    ran = sum(c.status in ("passed", "failed") for c in checks)
    skipped = sum(c.status == "skipped" and c.detail != "not selected" for c in checks)
    crashed = sum(c.status == "crashed" for c in checks)
    parts = [f"{_count(ran, 'check')} ran" if ran else "", f"{skipped} skipped" if skipped else "",
             f"{crashed} could not finish" if crashed else ""]
    return ", ".join(p for p in parts if p)


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"


def _codes(findings: list[Finding], limit: int = 4) -> str:
    codes = sorted({f.code for f in findings})
    return ", ".join(codes[:limit]) + (f" +{len(codes) - limit} more" if len(codes) > limit else "")


def _line(console: Console, text: Text) -> None:
    _wrap(console, Text(""), text)


def _wrap(console: Console, prefix: Text | str, body: Text) -> None:
    """Print ``prefix`` then ``body`` wrapped to the console width, continuation lines aligned under
    the body. Words longer than a line (paths, shapes) are folded, so no line exceeds the width."""
    prefix = Text(prefix) if isinstance(prefix, str) else prefix
    indent = Text(" " * len(prefix))
    for i, line in enumerate(body.wrap(console, max(20, console.width - len(prefix)), overflow="fold")):
        line.rstrip()
        console.print((prefix if i == 0 else indent) + line)


def render_text(report: Report, width: int = MAX_WIDTH) -> str:
    """The terminal report as plain text (no colour), e.g. for logs and tests."""
    buf = io.StringIO()
    # force_jupyter=False: in a notebook rich would send the text to the cell output, not to `buf`
    console = Console(file=buf, width=width, no_color=True, color_system=None, highlight=False,
                      force_jupyter=False)
    print_report(report, console)
    return buf.getvalue()
