"""Nightly-style fuzz run with counts: random small models through nndoctor.check, reporting how many
examples ran, internal crashes, state changes, schema failures and budget overruns.

    python bench/fuzz_run.py [--examples 300] [--budget 8] [--seconds 1800]
"""
from __future__ import annotations

import argparse
import os
import sys
import time
import traceback
from collections import Counter

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "tests"))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--examples", type=int, default=300)
    parser.add_argument("--budget", type=float, default=8.0)
    parser.add_argument("--seconds", type=float, default=1800.0, help="stop drawing new examples after this")
    args = parser.parse_args()

    from hypothesis import HealthCheck, given, settings

    from fuzz_models import build, specs
    from helpers import run_checked

    counts: Counter = Counter()
    kinds: Counter = Counter()
    started = time.monotonic()

    @settings(max_examples=args.examples, deadline=None, database=None, suppress_health_check=list(HealthCheck))
    @given(specs)
    def one(spec) -> None:
        if time.monotonic() - started > args.seconds:
            return
        counts["examples"] += 1
        kinds[spec.kind] += 1
        t0 = time.monotonic()
        try:
            run_checked(build(spec), budget=args.budget)
        except AssertionError as exc:
            text = str(exc)
            key = ("internal crashes" if "crashed" in text else "state changes" if "fingerprint" in text or "rng" in text
                   else "other assertion")
            counts[key] += 1
            print(f"FAIL {key}: {spec}\n  {text[:300]}", flush=True)
        except Exception:
            counts["internal crashes"] += 1
            print(f"CRASH: {spec}\n{traceback.format_exc()[-800:]}", flush=True)
        if time.monotonic() - t0 > args.budget + 15:
            counts["budget overruns"] += 1

    one()
    print(f"examples {counts['examples']} ({dict(kinds)}); internal crashes {counts['internal crashes']}; "
          f"state changes {counts['state changes']}; other failures {counts['other assertion']}; "
          f"budget overruns {counts['budget overruns']}; {time.monotonic() - started:.0f} s")


if __name__ == "__main__":
    main()
