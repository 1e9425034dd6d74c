"""Seconds of the overfit step (single-batch run, range test, confirmations; gradient flow) per clean model,
and of the planted OFB/GRD bugs, whose confirmations and verified fixes run extra experiments.
Prints seconds and step counts; asserts nothing.

    python bench/bench_overfit.py [--models mlp_digits,cnn_bn_digits] [--repeat 3] [--bugs]

The playbook runs torch on one thread whatever ``OMP_NUM_THREADS`` says (a step 1 over 0.2 s gets threads
back, up to the idle cores): on a machine shared with other busy processes, waiting intra-op threads made these seconds swing tenfold.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "tests"))

CHECKS = ("overfit-one-batch", "gradient-flow")


def measure(build, repeat: int) -> tuple[float, float, dict]:
    """Median seconds of the overfit step's checks and of the whole (selected) check; the last report's facts."""
    import nndoctor

    step, total, facts = [], [], {}
    for _ in range(repeat):
        setup = build()
        t0 = time.perf_counter()
        report = nndoctor.check(setup, select=["OFB", "GRD"])
        total.append(time.perf_counter() - t0)
        step.append(sum(c.seconds for c in report.checks if c.name in CHECKS))
        ofb = next((f for f in report.findings if f.code.startswith("OFB")), None)
        facts = {"codes": ",".join(sorted(report.codes())) or "-",
                 "ofb": ofb.code if ofb else "-",
                 "steps": ofb.evidence.get("converged_at") or ofb.evidence.get("steps") if ofb else "-",
                 "runs": len(report.meta["extras"].get("overfit", {}).get("curves", {}))}
    return statistics.median(step), statistics.median(total), facts


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--models", default="")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--bugs", action="store_true", help="also the planted OFB/GRD cases")
    args = parser.parse_args()

    import torch

    from cases.clean_models import CLEAN

    print(f"torch {torch.__version__}, {torch.get_num_threads()} intra-op threads, "
          f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}, median of {args.repeat}")
    print(f"{'model':<36}{'step s':>8}{'check s':>9}  {'finding':<8}{'steps':>6}  codes")
    names = args.models.split(",") if args.models else sorted(CLEAN)
    rows = [(name, CLEAN[name]) for name in names]
    if args.bugs:
        from cases import grd_cases, ofb_cases

        rows += [(f"bug: {c.name}", c.build) for c in ofb_cases.CASES + grd_cases.CASES]
    for name, build in rows:
        step, total, facts = measure(build, args.repeat)
        print(f"{name:<36}{step:>8.2f}{total:>9.2f}  {facts['ofb']:<8}{str(facts['steps']):>6}  {facts['codes']}")


if __name__ == "__main__":
    main()
