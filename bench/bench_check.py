"""Time of `nndoctor check` on the reference (clean-suite) models, by playbook step, and the import time
of nndoctor beyond torch's. Prints seconds and ratios; asserts nothing.

    python bench/bench_check.py [--models mlp_digits,cnn_bn_digits] [--repeat 1]
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "tests"))


def import_time(repeat: int = 5) -> tuple[float, float]:
    """Median seconds to import torch alone, and torch plus nndoctor, in fresh interpreters (interleaved)."""
    plain, both = [], []
    for _ in range(repeat):
        for code, out in (("import torch", plain), ("import torch, nndoctor", both)):
            t0 = time.perf_counter()
            subprocess.run([sys.executable, "-c", code], check=True)
            out.append(time.perf_counter() - t0)
    return statistics.median(plain), statistics.median(both)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--models", default="")
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--no-import", action="store_true")
    parser.add_argument("--mode", default="default", choices=("quick", "default", "thorough"))
    args = parser.parse_args()

    import nndoctor
    from cases.clean_models import CLEAN

    names = args.models.split(",") if args.models else sorted(CLEAN)
    steps = ["run", "bugs", "overfit", "compare"]
    print(f"{'model':<24}{'total s':>9}" + "".join(f"{s:>9}" for s in steps) + "  slowest check")
    for name in names:
        totals = []
        for _ in range(args.repeat):
            setup = CLEAN[name]()
            t0 = time.perf_counter()
            report = nndoctor.check(setup, mode=args.mode)
            totals.append(time.perf_counter() - t0)
        by_step = {s: sum(c.seconds for c in report.checks if c.step == s) for s in steps}
        slowest = max(report.checks, key=lambda c: c.seconds)
        print(f"{name:<24}{statistics.median(totals):>9.2f}" + "".join(f"{by_step[s]:>9.2f}" for s in steps)
              + f"  {slowest.name} {slowest.seconds:.2f}s")
    if not args.no_import:
        plain, both = import_time()
        print(f"\nimport torch: {plain:.2f}s; import torch+nndoctor: {both:.2f}s; nndoctor adds {both - plain:.2f}s "
              f"(ratio {both / plain:.2f}x)")


if __name__ == "__main__":
    main()
