"""MOD004: functional dropout left on at evaluation, from what ``probes/watchers/functional_modes.py``
recorded. A new code, not MOD002: ``model.eval()`` (MOD002's fix) cannot turn it off; the fix is at the
call, which is where the finding points."""
from __future__ import annotations

from typing import Any

from nndoctor.findings import Finding


def judge(watcher: Any) -> list[Finding]:
    findings = []
    for site, c in sorted(watcher.calls.items(), key=lambda kv: -kv[1]["count"]):
        call = f" (`{c['text']}`)" if c["text"] else ""
        findings.append(Finding(
            "MOD004", f"{c['count']} call(s) of F.{c['function']}{call} at {site} ran during evaluation (no "
            f"gradients, model in eval mode) with the default training=True: p={c['p']:g} of the activations "
            "were still dropped, so the evaluation is noisy and pessimistic; model.eval() does not reach it.",
            location=site, evidence={"cause": "train-eval-mode", "function": c["function"], "p": c["p"],
                                     "eval_calls": c["count"], "eval_forwards": watcher.eval_forwards},
            suggestions=[f"Pass training=self.training: F.{c['function']}(x, {c['p']:g}, training=self.training), "
                         "or use an nn.Dropout module."]))
    return findings
