"""The "Next steps" block init prints after the playbook: the baselines to beat and what to look for."""
from __future__ import annotations

from typing import Any

# INTERFACE.md section 4, most trusted first.
KNOWN_RESULT_SOURCES = [
    ("official-similar", "an official implementation evaluated on data similar to yours"),
    ("official-benchmark", "an official implementation on a benchmark dataset"),
    ("unofficial", "an unofficial implementation"),
    ("paper", "a paper with no code"),
    ("benchmark", "the model's results on a benchmark dataset"),
    ("similar-model", "a similar model on a similar dataset"),
]


def next_steps(report: Any, file: str) -> str:
    """What the user should do next, from the report of the playbook run on the written file."""
    table = (getattr(report, "meta", {}) or {}).get("extras", {}).get("compare") or {}
    lines = ["Next steps"]
    rows = [r for r in table.get("rows", []) if r.get("kind") in ("model", "baseline", "chance")
            and isinstance(r.get("value"), (int, float))]
    if rows:
        metric = str(table.get("metric", "score")).replace("_", " ")
        lines.append(f"  1. Beat the simple baselines ({metric} on {table.get('split', 'held-out data')}):")
        lines += [f"       {r['name']:<28} {r['value']:.3f}" for r in rows]
    else:
        lines.append(f"  1. Beat the simple baselines: `nndoctor check {file}` measures them (majority/mean, "
                     "linear, nearest neighbours).")
    lines.append("  2. Look for known results on data like yours, most trusted first:")
    lines += [f"       {source:<19} {what}" for source, what in KNOWN_RESULT_SOURCES]
    lines.append("     and add them to setup() as known_results=[nndoctor.KnownResult(metric=..., value=..., "
                 "source=...)].")
    lines.append("  3. Add complexity one piece at a time (capacity, then augmentation or regularisation, then a "
                 f"schedule); run `nndoctor check {file}` after each change.")
    return "\n".join(lines)
