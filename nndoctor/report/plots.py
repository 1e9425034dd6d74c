"""Plots for the HTML report: matplotlib figures rendered to SVG markup that is inlined in the page.

Each function takes plain data and returns an ``<svg>`` string, or None when there is nothing to draw.
Figures are built with ``matplotlib.figure.Figure`` directly (no pyplot, no global backend change),
text is drawn as paths (the page looks the same without the fonts, and no user string ends up as
markup), and element ids are made unique per figure so that several SVGs can share one page.
This module imports matplotlib: it is only imported when an HTML report is rendered.
"""
from __future__ import annotations

import html
import io
import itertools
import math
import re
from typing import Any, Iterable, Sequence

import matplotlib
from matplotlib.figure import Figure
from matplotlib.ticker import NullFormatter

MAX_LAYERS = 40  # bars per layer chart; beyond that, flagged, first, last and most unusual layers are kept
LOG_SPAN = 10.0  # a positive curve spanning more than this ratio gets a log axis (a plateau stays visible)

# Colours, one meaning each (the page uses the same red for errors).
MAIN, CONFIRM, FIX, EXTRA = "#1d4ed8", "#d97706", "#15803d", "#7c3aed"
RUN_COLOURS = [CONFIRM, FIX, EXTRA, "#0891b2", "#be185d", "#65a30d", "#92400e"]  # one per change tried
FLAGGED, NEUTRAL, LIGHT = "#b42318", "#64748b", "#cbd5e1"
KIND_COLOURS = {"model": MAIN, "baseline": NEUTRAL, "chance": LIGHT, "known": EXTRA, "ablation": CONFIRM}

_RC = {
    "svg.fonttype": "path",
    "svg.hashsalt": "nndoctor",  # stable ids: the same report renders to the same page
    "font.size": 9,
    "axes.titlesize": 10,
    "axes.titleweight": "bold",
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": True,
    "grid.color": "#e2e8f0",
    "grid.linewidth": 0.6,
    "axes.axisbelow": True,
    "legend.frameon": False,
}
_figure_ids = itertools.count(1)


# ----- data coercion: anything malformed becomes "nothing to draw", never an exception -------------
def number(value: Any) -> float | None:
    """A float from a Python/numpy/torch number or a "nan"/"inf" string (as JSON stores them); else None."""
    if isinstance(value, bool):
        return None
    if hasattr(value, "item") and getattr(value, "ndim", 0) == 0:
        value = value.item()
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return None
    return None


def numbers(values: Any) -> list[float] | None:
    """A list of floats (non-finite allowed) from a sequence of numbers, or None if it is not one."""
    if hasattr(values, "tolist"):
        values = values.tolist()
    if not isinstance(values, (list, tuple)) or not values:
        return None
    out = [number(v) for v in values]
    return None if any(v is None for v in out) else out  # type: ignore[return-value]


def curve(values: Any) -> tuple[list[float], list[float]] | None:
    """(steps, values) from ``[y, ...]``, ``[[step, y], ...]`` or ``{"steps": [...], "loss"|"values": [...]}``."""
    if isinstance(values, dict):
        ys = numbers(values.get("loss", values.get("values")))
        xs = numbers(values.get("steps")) if values.get("steps") is not None else None
        if ys is None or (xs is not None and len(xs) != len(ys)):
            return None
        return (xs or [float(i) for i in range(len(ys))]), ys
    pairs = isinstance(values, (list, tuple)) and values and all(isinstance(p, (list, tuple)) and len(p) == 2
                                                                 for p in values)
    if pairs:
        xs, ys = numbers([p[0] for p in values]), numbers([p[1] for p in values])
        return (xs, ys) if xs is not None and ys is not None else None
    ys = numbers(values)
    return ([float(i) for i in range(len(ys))], ys) if ys is not None else None


# ----- figures ---------------------------------------------------------------------------------------
def curves_plot(curves: dict[str, Any], *, title: str, ylabel: str = "loss", xlabel: str = "step",
                markers: Sequence[tuple[float, str]] = ()) -> str | None:
    """Lines of ``{label: curve}`` on one axis; the first is the main run, the others are overlaid.

    Overlaid runs get one colour per change they try (the code in their label, e.g. "(LOS001)" and
    "LOS001 fix: ..." share one), dashed for a confirmation, solid for a verified fix. A curve that
    turns NaN/Inf ends with an x at its last finite point. ``markers`` are ``(step, label)`` vertical
    lines (e.g. where a finding was raised).
    """
    parsed = {str(label): xy for label, values in curves.items() if (xy := curve(values)) is not None}
    parsed = {k: v for k, v in parsed.items() if any(math.isfinite(y) for y in v[1])}
    if not parsed:
        return None
    with matplotlib.rc_context(_RC):
        fig = Figure(figsize=(7.2, 2.9 + 0.17 * (len(parsed) if len(parsed) > 1 else 0)), layout="constrained")
        ax = fig.add_subplot()
        finite = [y for _, ys in parsed.values() for y in ys if math.isfinite(y)]
        if min(finite) > 0 and max(finite) / min(finite) > LOG_SPAN:
            ax.set_yscale("log")
        for (label, (xs, ys)), style in zip(parsed.items(), _line_styles(list(parsed))):
            ax.plot(xs, [y if math.isfinite(y) else math.nan for y in ys], label=_short(label, 110), **style)
            last = max((i for i, y in enumerate(ys) if math.isfinite(y)), default=None)
            if last is not None and last < len(ys) - 1:  # diverged: mark where the numbers ran out
                ax.plot([xs[last]], [ys[last]], marker="x", markersize=9, color=FLAGGED, linestyle="none")
                ax.annotate("NaN/Inf after this step", (xs[last], ys[last]), textcoords="offset points",
                            xytext=(6, 6), color=FLAGGED, fontsize=8)
        for step, label in markers:
            ax.axvline(step, color=FLAGGED, linewidth=0.9, linestyle=":")
            ax.annotate(_short(label, 20), (step, 1.0), xycoords=("data", "axes fraction"), rotation=90,
                        va="top", ha="right", fontsize=7, color=FLAGGED)
        ax.set_title(_literal(title), loc="left")
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
        if len(parsed) > 1:  # below the axes: long labels never hide a curve
            fig.legend(loc="outside lower left", fontsize=8, handlelength=3)
        return to_svg(fig, title)


def layer_bars_plot(layers: list[str], panels: list[dict[str, Any]], *, title: str,
                    flagged: Iterable[str] = ()) -> str | None:
    """Horizontal bars per layer, one panel per measurement, layers top to bottom in model order.

    Each panel: ``{"values": [float|None per layer], "xlabel": str, "log": bool, "band": (lo, hi) | None,
    "limit": (lo, hi) | None}``. A band shades the typical range; layers in ``flagged`` are drawn red.
    """
    panels = [p for p in panels if any(_finite(v) for v in p["values"])]
    if not layers or not panels:
        return None
    flagged = set(flagged)
    keep = _keep_layers(layers, panels, flagged)
    names = [layers[i] for i in keep]
    with matplotlib.rc_context(_RC):
        fig = Figure(figsize=(7.2, max(2.0, 1.2 + 0.22 * len(names))), layout="constrained")
        axes = fig.subplots(1, len(panels), sharey=True, squeeze=False)[0]
        ypos = list(range(len(names)))
        for ax, panel in zip(axes, panels):
            values = [panel["values"][i] if _finite(panel["values"][i]) else math.nan for i in keep]
            colours = [FLAGGED if _flag(n, flagged) else MAIN for n in names]
            if panel.get("log") and any(v > 0 for v in values):
                ax.set_xscale("log")
                ax.set_xlim(*_decades([v for v in values if v > 0] + list(panel.get("band") or ())))
                ax.xaxis.set_minor_formatter(NullFormatter())
                for y, v in zip(ypos, values):
                    if v == 0:  # no gradient at all: the most important bar cannot be drawn on a log axis
                        ax.annotate("0", (0, y), xycoords=("axes fraction", "data"), xytext=(3, 0),
                                    textcoords="offset points", va="center", fontsize=8, color=FLAGGED)
                values = [v if v > 0 else math.nan for v in values]
            ax.barh(ypos, values, color=colours, height=0.65)
            if panel.get("band"):
                lo, hi = panel["band"]
                ax.axvspan(lo, hi, color=FIX, alpha=0.12, linewidth=0)
                ax.annotate("typical", (math.sqrt(lo * hi) if panel.get("log") else (lo + hi) / 2, 1.0),
                            xycoords=("data", "axes fraction"), va="bottom", ha="center", fontsize=7, color=FIX)
            if panel.get("limit"):
                ax.set_xlim(*panel["limit"])
            ax.set_xlabel(panel["xlabel"])
            ax.grid(axis="y", visible=False)
        axes[0].set_yticks(ypos, [_short(n, 38) for n in names])
        axes[0].set_ylim(len(names) - 0.5, -0.5)  # every row, even one with no bar; first layer on top
        fig.suptitle(_literal(title) + ("" if len(keep) == len(layers) else f" ({len(keep)} of {len(layers)} layers)"),
                     x=0.01, ha="left", fontsize=10, fontweight="bold")
        return to_svg(fig, title)


def compare_plot(rows: list[dict[str, Any]], *, metric: str, title: str) -> str | None:
    """One bar per row of the comparison table (model, baselines, chance, known results, ablations)."""
    rows = [r for r in rows if isinstance(r, dict) and _finite(number(r.get("value")))]
    if not rows:
        return None
    with matplotlib.rc_context(_RC):
        fig = Figure(figsize=(7.2, 1.0 + 0.3 * len(rows)))
        ax = fig.add_subplot()
        values = [number(r["value"]) for r in rows]
        ypos = list(range(len(rows)))
        colours = [KIND_COLOURS.get(str(r.get("kind")), NEUTRAL) for r in rows]
        ax.barh(ypos, values, color=colours, height=0.65)
        span = max(abs(v) for v in values) or 1.0
        for y, v in zip(ypos, values):
            ax.annotate(f"{v:.3g}", (v, y), xytext=(3 if v >= 0 else -3, 0), textcoords="offset points",
                        va="center", ha="left" if v >= 0 else "right", fontsize=8)
        ax.set_yticks(ypos, [_short(str(r.get("name", "?")), 40) for r in rows])
        ax.invert_yaxis()
        ax.set_xlim(min(0.0, min(values) - 0.12 * span), max(0.0, max(values) + 0.12 * span))
        ax.set_xlabel(metric.replace("_", " "))
        ax.grid(axis="y", visible=False)
        ax.set_title(_literal(title), loc="left")
        return to_svg(fig, title)


# ----- helpers ---------------------------------------------------------------------------------------
def to_svg(fig: Figure, label: str) -> str:
    """The figure as an ``<svg>`` element for inlining: no XML prolog, ids unique to this figure."""
    buf = io.StringIO()
    fig.savefig(buf, format="svg", bbox_inches="tight", metadata={"Date": None})
    svg = buf.getvalue()
    svg = svg[svg.index("<svg"):]
    svg = re.sub(r"<metadata>.*?</metadata>\s*", "", svg, flags=re.S)
    prefix = f"nd{next(_figure_ids)}-"
    svg = re.sub(r'\bid="([^"]+)"', rf'id="{prefix}\1"', svg)
    svg = re.sub(r'href="#([^"]+)"', rf'href="#{prefix}\1"', svg)
    svg = re.sub(r"url\(#([^)]+)\)", rf"url(#{prefix}\1)", svg)
    return svg.replace("<svg ", f'<svg role="img" aria-label="{html.escape(label)}" ', 1)


def _line_styles(labels: list[str]) -> list[dict[str, Any]]:
    """Matplotlib line styles: the main run thick blue; then one colour per change, dashed when the
    label says it is a confirmation, solid when it is a fix."""
    colours: dict[str, str] = {}
    styles = [{"color": MAIN, "linewidth": 2.2, "linestyle": "-"}]
    for label in labels[1:]:
        change = m.group(0) if (m := re.search(r"\b[A-Z]{3}\d{3}\b", label)) else label
        colour = colours.setdefault(change, RUN_COLOURS[len(colours) % len(RUN_COLOURS)])
        confirmation = "confirm" in label.lower() or "fix" not in label.lower()
        styles.append({"color": colour, "linewidth": 1.4, "linestyle": "--" if confirmation else "-"})
    return styles


def _decades(values: list[float]) -> tuple[float, float]:
    """Whole decades around positive values, so that ticks are readable and the smallest bar (bars on a
    log axis start at its left edge) is still at least half a decade long."""
    return 10.0 ** math.floor(math.log10(min(values)) - 0.5), 10.0 ** math.ceil(math.log10(max(values)) + 1e-9)


def _keep_layers(layers: list[str], panels: list[dict[str, Any]], flagged: set[str]) -> list[int]:
    """Indices of the layers to draw: all of them, or (a deep model) the layers named in findings, the
    first and last few, and those farthest from the typical layer (in decades on a log panel)."""
    n = len(layers)
    if n <= MAX_LAYERS:
        return list(range(n))
    keep = {i for i in range(n) if _flag(layers[i], flagged)} | set(range(5)) | set(range(n - 5, n))
    panel = panels[0]
    scale = (lambda v: math.log10(v) if v > 0 else -math.inf) if panel.get("log") else (lambda v: v)
    known = {i: scale(v) for i, v in enumerate(panel["values"]) if _finite(v)}
    middle = sorted(v for v in known.values() if math.isfinite(v))
    typical = middle[len(middle) // 2] if middle else 0.0
    unusual = sorted((i for i in known if i not in keep), key=lambda i: -abs(known[i] - typical))
    return sorted(keep | set(unusual[: max(0, MAX_LAYERS - len(keep))]))


def _flag(name: str, flagged: set[str]) -> bool:
    """The layer is named by a finding: the same module, or a parameter of it (model.0 -> model.0.weight)."""
    return any(name == f or name.startswith(f + ".") for f in flagged)


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _short(text: str, limit: int) -> str:
    """A label: middle-truncated ('model.encoder...layers.3.fc'), with "$" kept literal (not TeX)."""
    text = text if len(text) <= limit else text[: limit // 2 - 1] + "..." + text[-(limit - limit // 2 - 2):]
    return _literal(text)


def _literal(text: str) -> str:
    """Text that matplotlib draws as written: an unescaped pair of "$" would start maths."""
    return text.replace("$", r"\$")
