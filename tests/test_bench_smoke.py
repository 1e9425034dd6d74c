"""The benchmarks still run (a smoke run with tiny sizes; no time is asserted)."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest

BENCH = os.path.join(os.path.dirname(os.path.dirname(__file__)), "bench")


@pytest.mark.slow  # about 2 minutes on 2 busy cores; asserts no code, only that the bench still runs
def test_monitor_bench_prints_ratios():
    out = subprocess.run([sys.executable, os.path.join(BENCH, "bench_monitor.py"), "--steps", "2", "--rounds", "1"],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert out.stdout.count("detect_anomaly") == 3


@pytest.mark.slow  # asserts no code, only that the bench still runs
def test_check_bench_prints_steps():
    out = subprocess.run([sys.executable, os.path.join(BENCH, "bench_check.py"), "--models", "mlp_digits",
                          "--no-import", "--mode", "quick"], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert "mlp_digits" in out.stdout


@pytest.mark.slow  # two torchrun processes; asserts no code, only that the bench still runs
def test_ddp_bench_prints_the_ratio_on_rank_0():
    out = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                          os.path.join(BENCH, "bench_ddp.py"), "--steps", "3", "--rounds", "1", "--width", "16"],
                         capture_output=True, text=True, timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.count("Monitor") == 1 and "findings none" in out.stdout
