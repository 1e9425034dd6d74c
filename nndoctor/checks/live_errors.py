"""Live runs: the exception that ended the user's training (RUN001-RUN005, DAT003), from the errors
watcher's classification (``probes/watchers/errors.py``), with what the crash catalogue knows of it."""
from __future__ import annotations

from typing import Any

from nndoctor.checks.crash_advice import known_evidence, known_fix, likely_cause, with_search
from nndoctor.findings import Finding

CODES = {"shape": "RUN001", "dtype": "RUN002", "device": "RUN003", "memory": "RUN004", "targets": "DAT003"}


def judge(watcher: Any) -> list[Finding]:
    info = watcher.info
    if info is None:
        return []
    location = watcher.module_path or info.source or "script"
    return [Finding(CODES.get(info.kind, "RUN005"), f"The training script crashed: {info.summary}"
                    + (f" (at {info.source}: `{info.source_line}`)" if info.source else "") + likely_cause(info),
                    location=location, evidence={"error": info.summary, "source": info.source, **known_evidence(info)},
                    suggestions=with_search(info, known_fix(info)))]
