"""Time budgets: every experiment asks how much time is left instead of assuming.

``hard_deadline`` backs the budget up when the user's own code is slow (a data loader that sleeps, a
huge model): in the main thread it interrupts whatever runs when the budget is spent.
"""
from __future__ import annotations

import signal
import threading
import time
from contextlib import contextmanager
from typing import Iterator


class BudgetExceeded(BaseException):
    """Raised inside slow user code when the budget is spent. A BaseException, so that the user's
    ``except Exception`` cannot swallow it."""


class Budget:
    """A wall-clock deadline. ``Budget(None)`` never expires."""

    def __init__(self, seconds: float | None):
        self.seconds = seconds
        self.start = time.monotonic()

    @property
    def elapsed(self) -> float:
        return time.monotonic() - self.start

    def remaining(self) -> float:
        if self.seconds is None:
            return float("inf")
        return max(0.0, self.seconds - self.elapsed)

    def expired(self) -> bool:
        return self.remaining() <= 0.0

    def sub(self, seconds: float) -> "Budget":
        """A child budget of at most ``seconds`` that also ends when this one does."""
        return Budget(min(seconds, self.remaining()))


@contextmanager
def hard_deadline(budget: Budget, grace: float = 2.0) -> Iterator[None]:
    """Raise BudgetExceeded in this thread ``grace`` seconds after ``budget`` runs out.

    Checks stop themselves by looking at the budget; this only catches code that never returns
    control (a sleeping loader). Where signals are unavailable (not the main thread, Windows) it
    does nothing.
    """
    seconds = budget.remaining()
    usable = (
        seconds != float("inf")
        and hasattr(signal, "setitimer")
        and threading.current_thread() is threading.main_thread()
    )
    if not usable:
        yield
        return

    def on_alarm(signum, frame):  # noqa: ARG001
        raise BudgetExceeded()

    previous = signal.signal(signal.SIGALRM, on_alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds + grace)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
