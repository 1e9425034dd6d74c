"""Time of `nndoctor check` on the reference (clean-suite) models: the report's own seconds (``meta.seconds``,
import excluded), the process's CPU seconds, seconds by playbook step, the slowest check, and the median
over the models per mode; then the import time of nndoctor beyond torch's. Prints; asserts nothing.

    python bench/bench_check.py [--models mlp_digits,cnn_bn_digits] [--modes quick,default] [--repeat 1]
                                [--fresh] [--no-import]

``--fresh`` runs every check in a new interpreter, as ``nndoctor check FILE`` does (first-call costs of
torch's ops included; the one-time import is not). On a machine shared with other busy processes, wall
seconds swing with the load: compare CPU seconds, or runs interleaved in the same session.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests"))
STEPS = ["run", "bugs", "overfit", "compare"]
DEFAULT_MODELS = ("mlp_digits,cnn_bn_digits,regression_diabetes,lstm_tokens,transformer_tokens,binary_breast_cancer,"
                  "sgd_momentum_wine")


def import_time(repeat: int = 5) -> tuple[float, float]:
    """Median seconds to import torch alone, and torch plus nndoctor, in fresh interpreters (interleaved)."""
    plain, both = [], []
    for _ in range(repeat):
        for code, out in (("import torch", plain), ("import torch, nndoctor", both)):
            t0 = time.perf_counter()
            subprocess.run([sys.executable, "-c", code], check=True)
            out.append(time.perf_counter() - t0)
    return statistics.median(plain), statistics.median(both)


def one(name: str, mode: str) -> dict:
    """One check of a fresh copy of the clean model ``name``: its seconds, CPU seconds and slowest check."""
    import nndoctor
    from cases.clean_models import CLEAN

    from nndoctor.playbook import _import_torch_lazily_loaded_parts

    _import_torch_lazily_loaded_parts()  # once per process, reported apart: not in the check's CPU seconds
    setup = CLEAN[name]()
    cpu = time.process_time()
    report = nndoctor.check(setup, mode=mode, progress=False)
    cpu = time.process_time() - cpu
    slowest = max(report.checks, key=lambda c: c.seconds)
    return {"seconds": report.meta["seconds"], "cpu": cpu, "import": report.meta.get("import_seconds", 0.0),
            "steps": {s: sum(c.seconds for c in report.checks if c.step == s) for s in STEPS},
            "slowest": f"{slowest.name} {slowest.seconds:.2f}s",
            "findings": sorted({f.code for f in report.findings if f.severity.value != "info"})}


def fresh(name: str, mode: str) -> dict:
    code = (f"import json, sys; sys.path.insert(0, {HERE!r}); import bench_check; "
            f"print('RESULT' + json.dumps(bench_check.one({name!r}, {mode!r})))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    return json.loads(next(line for line in out.splitlines() if line.startswith("RESULT"))[6:])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--models", default=DEFAULT_MODELS, help="comma-separated; 'all' for the whole clean suite")
    parser.add_argument("--modes", "--mode", default="quick,default")
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--fresh", action="store_true", help="every check in a new interpreter, like the CLI")
    parser.add_argument("--no-import", action="store_true")
    args = parser.parse_args()

    from cases.clean_models import CLEAN

    names = sorted(CLEAN) if args.models == "all" else args.models.split(",")
    if not args.fresh:
        one(names[0], "quick")  # the one-time imports and first calls, outside the table
    print(f"{'model':<24}{'mode':<9}{'check s':>8}{'cpu s':>7}" + "".join(f"{s:>9}" for s in STEPS)
          + "  slowest check; errors/warnings")
    medians = {}
    for mode in args.modes.split(","):
        seconds, cpus = [], []
        for name in names:
            runs = [fresh(name, mode) if args.fresh else one(name, mode) for _ in range(args.repeat)]
            r = sorted(runs, key=lambda r: r["seconds"])[len(runs) // 2]
            seconds.append(r["seconds"])
            cpus.append(r["cpu"])
            print(f"{name:<24}{mode:<9}{r['seconds']:>8.2f}{r['cpu']:>7.2f}"
                  + "".join(f"{r['steps'][s]:>9.2f}" for s in STEPS)
                  + f"  {r['slowest']}; {','.join(r['findings']) or '-'}", flush=True)
        medians[mode] = (statistics.median(seconds), max(seconds), statistics.median(cpus))
    for mode, (median, worst, cpu) in medians.items():
        print(f"{mode}: median {median:.2f} s (CPU {cpu:.2f} s), slowest {worst:.2f} s over {len(names)} models")
    if not args.no_import:
        plain, both = import_time()
        print(f"\nimport torch: {plain:.2f}s; import torch+nndoctor: {both:.2f}s; nndoctor adds {both - plain:.2f}s "
              f"(ratio {both / plain:.2f}x)")


if __name__ == "__main__":
    main()
