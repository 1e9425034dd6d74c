"""The report of a live run: the judges' findings, one check per watcher saying what it watched, the
downsampled loss curve, and in a distributed run the merge of every rank's (``live/ranks.py``)."""
from __future__ import annotations

from typing import Any

from nndoctor.checks.live_curve import downsample
from nndoctor.findings import CheckRecord, Finding
from nndoctor.report.model import Report
from nndoctor.live.ranks import merge_ranks


def build_report(monitor: Any, found: list[list[Finding]], seconds: float) -> Report:
    checks = [CheckRecord(w.name, "crashed" if w.failed else "failed" if any(f.severity.value != "info" for f in findings)
                          else "passed", seconds, f"switched off: {w.failed}" if w.failed else w.describe(), "run")
              for w, findings in zip(monitor.watchers, found)]
    report = Report(findings=list(monitor.findings), checks=checks, meta={
        "steps": monitor.steps, "extras": {"loss_curve": downsample(monitor.losses)}})
    schedule = getattr(monitor.run, "lr_schedule", None)  # the LR per step, max over param groups
    if schedule is not None and schedule.curve():
        report.meta["extras"]["lr_curve"] = downsample(schedule.curve())
    merge_ranks(monitor, report)
    return report
