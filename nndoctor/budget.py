"""Time budgets: every experiment asks how much time is left instead of assuming."""
from __future__ import annotations

import time


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
