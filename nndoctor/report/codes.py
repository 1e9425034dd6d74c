"""`nndoctor codes`: the code catalogue and the crash catalogue as plain text, at most 100 columns."""
from __future__ import annotations

import difflib
import textwrap

from nndoctor import catalogue
from nndoctor.catalogue import crashes

WIDTH = 100


def code_table() -> str:
    """Every code by family: code, name, default severity, summary."""
    lines = []
    for prefix, (_module, _step, title) in catalogue.FAMILIES.items():
        lines.append(f"{prefix}  {title}")
        for entry in catalogue.CODES.values():
            if entry.family == prefix:
                head = f"  {entry.code}  {entry.name:<30} {entry.severity.value:<8}"
                wrapped = textwrap.wrap(entry.summary, width=WIDTH - len(head) - 1) or [""]
                lines.append(f"{head} {wrapped[0]}")
                lines += [" " * (len(head) + 1) + line for line in wrapped[1:]]
    lines.append("\nDetails: nndoctor codes CODE; common PyTorch error messages: nndoctor codes --errors")
    return "\n".join(lines)


def code_docs(codes: list[str]) -> str:
    return "\n\n".join(catalogue.get(c).doc() for c in codes)


def crash_entry(entry_id: str) -> crashes.KnownError:
    """The crash catalogue's entry ``entry_id``; KeyError with the closest ids when there is none."""
    entry = crashes.BY_ID.get(entry_id.lower())
    if entry is None:
        close = difflib.get_close_matches(entry_id.lower(), list(crashes.BY_ID), n=3, cutoff=0.5)
        raise KeyError(f"unknown error id {entry_id!r}" + (f"; did you mean {', '.join(close)}?" if close
                                                           else "; see `nndoctor codes --errors`"))
    return entry


def crash_doc(entry: crashes.KnownError) -> str:
    example = textwrap.indent(entry.example, "    ")
    where = f" (needs {entry.needs.upper()})" if entry.needs else ""
    return (f"{entry.id}\n\nMatches (regex)\n    {entry.pattern}\n\nCause\n    {entry.cause}\n\nFix\n    {entry.fix}"
            f"\n\nExample{where}\n{example}")


def crash_table() -> str:
    """The crash catalogue (catalogue/crashes.py) that RUN findings quote: id and cause."""
    width = max(len(e.id) for e in crashes.ERRORS) + 2
    lines = []
    for entry in crashes.ERRORS:
        wrapped = textwrap.wrap(entry.cause, width=WIDTH - width - 2) or [""]
        lines.append(f"  {entry.id:<{width}}{wrapped[0]}")
        lines += [" " * (width + 2) + line for line in wrapped[1:]]
    lines.append(f"\n{len(crashes.ERRORS)} known errors. Details: nndoctor codes --errors ID")
    return "\n".join(lines)
