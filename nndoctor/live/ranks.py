"""A distributed run's report: every rank's findings and facts carried to rank 0 (``probes/rank_exchange.py``),
merged and judged across ranks there (``checks/distributed.py``). Nothing happens in a single process."""
from __future__ import annotations

from typing import Any

from nndoctor.checks import distributed
from nndoctor.findings import Finding
from nndoctor.report.model import Report
from nndoctor.probes.rank_facts import world
from nndoctor.probes.watchers.ranks import RanksWatcher


def merge_ranks(monitor: Any, report: Report) -> None:
    rank, size = world()
    watcher = next((w for w in monitor.watchers if isinstance(w, RanksWatcher)), None)
    if size <= 1 or watcher is None:
        return
    facts, steps = watcher.facts, monitor.steps
    if facts.checksums and max(facts.checksums) < steps:
        facts.take_checksums(steps)
    payload = {"facts": facts.summary(), "steps": steps, "findings": [f.to_dict() for f in monitor.findings]}
    # A rank that crashed may have left the others stuck in a collective: wait for them only briefly.
    gathered = watcher.exchange.gather(rank, size, payload, brief=monitor.error is not None)
    report.meta.update({"rank": rank, "world_size": size})
    if gathered is None:
        if watcher.exchange.rank0_absent:  # nobody else will tell this rank's findings: it reports them itself
            report.findings = distributed.merge([(rank, [Finding.from_dict(f.to_dict()) for f in monitor.findings])],
                                                size)
            report.meta["unmerged"] = True
        return
    per_rank = [(p["facts"]["rank"], [Finding.from_dict(d) for d in p["findings"]]) for p in gathered]
    report.findings = distributed.merge(per_rank, size) + distributed.judge([p["facts"] for p in gathered])
    reported = sorted(p["facts"]["rank"] for p in gathered)
    report.meta.update({"ranks_reported": reported,
                        "ranks_missing": [r for r in range(size) if r not in reported],
                        "steps_per_rank": {str(p["facts"]["rank"]): p["steps"] for p in gathered}})
    for record in report.checks:  # the cross-rank verdicts belong to the ranks check
        if record.name == watcher.name:
            record.detail = f"{len(reported)} of {size} ranks compared: replicas, samplers, data shards"
            if any(f.severity.value != "info" for f in report.findings if f.code.startswith("DDP")):
                record.status = "failed"
