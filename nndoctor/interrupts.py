"""Ctrl-C that cannot be lost. Python turns SIGINT into a KeyboardInterrupt raised wherever the main thread
happens to be; raised inside a finaliser (``__del__``, a weakref callback: the garbage collector runs them
between any two lines) or caught by a library's broad ``except``, it is swallowed, and a long run goes on
as if nothing was pressed. While ``remembered_ctrl_c()`` is active, the signal is also written down, so the
playbook and the CLI stop at their next boundary even when the exception itself was lost."""
from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager

_requested = False
_depth = 0


def requested() -> bool:
    """Was Ctrl-C pressed since the outermost ``remembered_ctrl_c()`` began?"""
    return _requested


def stop_if_requested() -> None:
    """Raise the KeyboardInterrupt that may have been swallowed since Ctrl-C was pressed."""
    if _requested:
        raise KeyboardInterrupt


@contextmanager
def remembered_ctrl_c() -> Iterator[None]:
    """Write SIGINT down before the usual handler raises. Only in the main thread and only over Python's own
    handler or a user's callable one (chained): a SIGINT that is ignored (a background job) stays ignored."""
    global _requested, _depth
    previous = signal.getsignal(signal.SIGINT) if threading.current_thread() is threading.main_thread() else None
    if not callable(previous):
        yield
        return

    def handler(signum, frame):
        global _requested
        _requested = True
        previous(signum, frame)

    if _depth == 0:
        _requested = False
    _depth += 1
    signal.signal(signal.SIGINT, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
        _depth -= 1
