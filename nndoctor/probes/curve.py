"""The shape of a training curve: where it starts and ends, whether it blows up, bounces back or stalls.

Pure functions over one value per optimizer step (a loss, or an error). They describe a curve in the
same words for a single-batch experiment and for a live loss curve; what a shape means for the user's
model is for the checks to say.

Shapes, tested in this order:
  - ``explodes``: a value is NaN/Inf, or climbs to ``EXPLODE_RATIO`` times its start;
  - ``rises``: it ends clearly above where it started;
  - ``oscillates``: it falls and climbs back by at least ``REBOUND`` of its start, at least once;
  - ``plateaus``: its second half brings less than ``STALL`` of its start;
  - ``descends``: anything else (still going down).
"""
from __future__ import annotations

import math
import statistics
from dataclasses import asdict, dataclass
from typing import Sequence

EXPLODE_RATIO = 10.0  # a value ten times its start has blown up (a loss of 2.3 at 23)
REBOUND = 0.3  # climbing back by 30% of the start after a fall is not noise: it is overshooting
STALL = 0.02  # a second half that brings less than 2% of the start has stalled
WINDOW = 0.1  # share of the curve whose median stands for "the middle" and "the end" (noise-robust)


@dataclass
class Shape:
    kind: str  # explodes | rises | oscillates | plateaus | descends
    steps: int
    start: float
    end: float  # median of the last WINDOW of finite values
    min: float
    max: float
    first_non_finite: int | None  # index of the first NaN/Inf value
    peak_ratio: float  # max / start (relative to the scale of the start)
    rebound: float  # the largest climb back after a fall, as a share of the start's scale
    late_progress: float  # fall from the middle to the end, as a share of the start's scale

    def as_evidence(self) -> dict:
        return {k: (round(v, 6) if isinstance(v, float) and math.isfinite(v) else v) for k, v in asdict(self).items()}


def describe(values: Sequence[float]) -> Shape:
    """The shape of ``values`` (one per step, at least one)."""
    values = [float(v) for v in values]
    n = len(values)
    bad = next((i for i, v in enumerate(values) if not math.isfinite(v)), None)
    finite = values[:bad] if bad is not None else values
    if not finite:
        return Shape("explodes", n, values[0], math.nan, math.nan, math.nan, bad, math.inf, 0.0, 0.0)
    start = finite[0]
    scale = abs(start) if abs(start) > 1e-12 else max(max(abs(v) for v in finite), 1e-12)
    end = _median_tail(finite, len(finite))
    middle = _median_tail(finite, max(1, len(finite) // 2))
    peak = max(finite)
    shape = Shape(
        kind="descends", steps=n, start=start, end=end, min=min(finite), max=peak, first_non_finite=bad,
        peak_ratio=(peak - start) / scale + 1.0, rebound=_largest_rebound(finite) / scale,
        late_progress=(middle - end) / scale,
    )
    if bad is not None or shape.peak_ratio >= EXPLODE_RATIO:
        shape.kind = "explodes"
    elif end - start > STALL * scale:
        shape.kind = "rises"
    elif shape.rebound >= REBOUND:
        shape.kind = "oscillates"
    elif shape.late_progress < STALL:
        shape.kind = "plateaus"
    return shape


def _median_tail(values: list[float], upto: int) -> float:
    """Median of the WINDOW of values ending at ``upto`` (at least three values where there are)."""
    width = max(3, int(WINDOW * len(values)))
    window = values[max(0, upto - width):upto]
    return statistics.median(window)


def _largest_rebound(values: list[float]) -> float:
    """The largest rise of a value above the lowest value seen before it."""
    lowest, best = values[0], 0.0
    for v in values[1:]:
        best = max(best, v - lowest)
        lowest = min(lowest, v)
    return best


def downsample(values: Sequence[float], points: int = 100) -> tuple[list[int], list[float]]:
    """At most ``points`` (step, value) pairs, evenly spaced, always keeping the first and last step."""
    n = len(values)
    if n <= points:
        steps = list(range(n))
    else:
        steps = sorted({round(i * (n - 1) / (points - 1)) for i in range(points)})
    return steps, [_rounded(values[i]) for i in steps]


def _rounded(v: float) -> float:
    return float(f"{v:.4g}") if math.isfinite(v) else v
