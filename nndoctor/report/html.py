"""A self-contained HTML page for a Report (no network access when opened). User strings are escaped."""
from __future__ import annotations

import html
import json

from nndoctor.findings import Report


def render(report: Report) -> str:
    esc = html.escape
    rows = []
    for f in report.sorted_findings():
        sugg = "".join(f"<li>{esc(s)}</li>" for s in f.suggestions)
        rows.append(
            f'<section class="finding {esc(f.severity.value)}" data-code="{esc(f.code)}">'
            f"<h3>{esc(f.code)} {esc(f.name)} <small>{esc(f.severity.value)}</small></h3>"
            f"<p class=location>{esc(f.location)}</p><p>{esc(f.message)}</p><ul>{sugg}</ul>"
            f"<details><summary>evidence</summary><pre>{esc(json.dumps(f.to_dict()['evidence'], indent=2))}</pre></details>"
            "</section>"
        )
    return (
        "<!doctype html><html><head><meta charset=utf-8><title>nndoctor report</title>"
        "<style>body{font-family:sans-serif;max-width:60em;margin:auto}.error h3{color:#b00}"
        ".warning h3{color:#a60}.info h3{color:#06a}</style></head><body><h1>nndoctor report</h1>"
        + "".join(rows)
        + "</body></html>"
    )
