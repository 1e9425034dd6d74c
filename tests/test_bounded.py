"""Bounded: --budget is honoured even when the user's code is slow; Ctrl-C prints what was found so far."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

from test_cli import FILES, nndoctor

SLOW = os.path.join(FILES, "slow_setup.py")


def test_budget_is_honoured_with_a_sleeping_loader(tmp_path):
    started = time.monotonic()
    out = nndoctor("check", SLOW, "--budget", "3", "--json", str(tmp_path / "r.json"))
    elapsed = time.monotonic() - started
    assert out.returncode in (0, 1), out.stderr
    assert elapsed < 3 + 2 + 15, f"took {elapsed:.1f}s for a 3 s budget"
    assert "budget" in out.stdout  # the report says what was skipped and why


def test_ctrl_c_prints_what_was_found_so_far():
    cmd = [sys.executable, "-m", "nndoctor", "check", SLOW, "--budget", "120"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "NO_COLOR": "1"})
    time.sleep(6)  # import + the first (sleeping) batches
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=60)
    assert "Traceback" not in stderr, stderr
    assert "interrupted" in stdout, stdout
    assert "verdict" in stdout
