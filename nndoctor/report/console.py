"""Showing a run to the person at the keyboard: the report printed and written out (``emit_report``),
and progress while checks run (``progress_display``) on a terminal or in a Jupyter notebook."""
from __future__ import annotations

import sys
import time
from contextlib import contextmanager
from typing import TYPE_CHECKING, Callable, Iterator

if TYPE_CHECKING:
    from nndoctor.report.model import Report

Progress = Callable[[str], None]


def emit_report(report: Report, json_path: str | None, html_path: str | None, title: str) -> int:
    """Print the report, write its JSON/HTML where asked, and return its exit status (1: an error finding)."""
    from nndoctor.report.terminal import print_report

    print_report(report, title=title)
    report.meta.setdefault("title", title)  # names what was checked in the JSON and HTML
    _write(json_path, report.to_json)
    _write(html_path, report.to_html)
    for label, path in (("JSON", json_path), ("HTML", html_path)):
        if path:
            print(f"{label} report written to {path}")
    return report.exit_code


def _write(path: str | None, render: Callable[[], str]) -> None:
    if not path:
        return
    with open(path, "w", encoding="utf-8") as fh:
        fh.write(render())


@contextmanager
def progress_display(show: bool | Progress | None = None) -> Iterator[Progress]:
    """A callable taking progress messages, shown while the block runs.

    ``show``: a callable is used as it is; ``None`` (the default) shows progress in a notebook, or as
    a one-line spinner when stderr is a terminal, and nothing otherwise (logs and pipes stay clean);
    ``True`` shows it also when neither (plain lines on stderr); ``False`` never.
    """
    if callable(show):
        yield show
    elif show is False:
        yield _silent
    elif _in_notebook():
        with _notebook_progress() as progress:
            yield progress
    elif sys.stderr.isatty():
        from rich.console import Console

        with Console(file=sys.stderr).status("nndoctor: starting") as status:
            yield lambda message: status.update(f"nndoctor: {message}")
    elif show:
        yield lambda message: print(f"nndoctor: {message}", file=sys.stderr, flush=True)
    else:
        yield _silent


def _silent(message: str) -> None:
    pass


def _in_notebook() -> bool:
    """True in a Jupyter kernel (a terminal IPython has no kernel: the spinner works there)."""
    ipython = sys.modules.get("IPython")
    shell = ipython.get_ipython() if ipython is not None and hasattr(ipython, "get_ipython") else None
    return shell is not None and getattr(shell, "kernel", None) is not None


@contextmanager
def _notebook_progress() -> Iterator[Progress]:
    """One output line updated in place (a display_id), so no widget library is needed; at most about
    ten updates a second, so a chatty experiment does not flood the notebook's messages."""
    from IPython.display import display

    started = time.monotonic()
    handle = display({"text/plain": "nndoctor: starting"}, raw=True, display_id=True)
    last = 0.0

    def progress(message: str) -> None:
        nonlocal last
        now = time.monotonic()
        if now - last >= 0.1:
            last = now
            handle.update({"text/plain": f"nndoctor: {message}"}, raw=True)

    try:
        yield progress
    finally:
        handle.update({"text/plain": f"nndoctor: finished in {time.monotonic() - started:.1f} s"}, raw=True)
