"""Bounded: --budget is honoured even when the user's code is slow; Ctrl-C prints what was found so far.

No assertion here reads a clock and nothing sleeps a fixed time: the tests wait for lines the setup file
prints (tests/files/signalling_slow_setup.py) and assert what nndoctor decided (checks cut short, the
budget recorded as reached, the run recorded as interrupted). Timeouts only guard against a hang."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

from test_cli import FILES, nndoctor

SLOW = os.path.join(FILES, "slow_setup.py")
SIGNALLING = os.path.join(FILES, "signalling_slow_setup.py")
HANG_GUARD = 300  # seconds; a process still running after this is a hang, however busy the machine


def test_budget_is_honoured_with_a_sleeping_loader(tmp_path):
    out = nndoctor("check", SLOW, "--budget", "3", "--json", str(tmp_path / "r.json"), timeout=HANG_GUARD)
    assert out.returncode in (0, 1), out.stderr
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["meta"]["budget_reached"] is True
    checks = {c["name"]: c for c in report["checks"]}
    # the sleeping loader never returns within the budget: the first step is cut short, not waited for
    assert checks["one-training-step"]["status"] == "skipped"
    assert "time budget of 3 s used up (your code was still running)" in checks["one-training-step"]["detail"]
    assert not [c for c in report["checks"] if c["status"] in ("passed", "failed")]
    assert "budget" in out.stdout  # the report says what was skipped and why


def _default_ctrl_c() -> None:
    # A job started in the background by a shell without job control (`pytest &`, some CI runners)
    # inherits SIGINT *ignored*, and Python keeps it ignored: a Ctrl-C would never reach nndoctor there,
    # as it never reaches any program. The child gets the terminal's default, as a user's shell gives it.
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _start(*extra: str) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "nndoctor", "check", SIGNALLING, "--budget", "600", *extra]
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "NO_COLOR": "1"}, preexec_fn=_default_ctrl_c)


def _wait_for(proc: subprocess.Popen, text: str) -> str:
    seen = ""
    for line in proc.stdout:  # blocks until the process says it got there
        seen += line
        if text in line:
            return seen
    raise AssertionError(f"the process ended before printing {text!r}: {seen}")


def test_ctrl_c_prints_what_was_found_so_far(tmp_path):
    proc = _start("--json", str(tmp_path / "r.json"))
    _wait_for(proc, "setup: reading data")  # the playbook has started and is inside the user's loader
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=HANG_GUARD)
    assert "Traceback" not in stderr, stderr
    assert "interrupted" in stdout, stdout
    assert "verdict" in stdout
    assert json.loads((tmp_path / "r.json").read_text())["meta"]["interrupted"] is True


def test_ctrl_c_during_start_up_exits_without_a_traceback():
    proc = _start()
    _wait_for(proc, "setup: imported")  # nndoctor is loading the setup file: no check has started
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=HANG_GUARD)
    assert "Traceback" not in stderr, stderr
    # either the setup was still loading (nothing to report: 130), or the playbook had just begun
    assert proc.returncode == 130 and "nndoctor: interrupted" in stderr or "interrupted" in stdout, (stdout, stderr)


def test_ctrl_c_right_at_start_ends_the_process():
    proc = _start()
    proc.send_signal(signal.SIGINT)  # before Python, torch or nndoctor have finished starting
    stdout, _ = proc.communicate(timeout=HANG_GUARD)  # raises TimeoutExpired if the process kept running
    assert proc.returncode != 0
    assert "verdict: fix" not in stdout  # it stopped: a playbook run to its end would have found CMP001


def test_a_ctrl_c_swallowed_by_the_users_code_still_stops_the_playbook():
    """The KeyboardInterrupt lands in the user's broad ``except`` (or a finaliser, which Python silences):
    nndoctor wrote the signal down and stops at the next check, as for any Ctrl-C."""
    import time

    import torch
    from torch import nn

    import nndoctor
    from nndoctor.playbook import INTERRUPTED

    class Swallows(torch.utils.data.Dataset):
        sent = False

        def __len__(self):
            return 64

        def __getitem__(self, i):
            if not Swallows.sent:
                Swallows.sent = True
                try:
                    os.kill(os.getpid(), signal.SIGINT)
                    time.sleep(1.0)  # the handler raises here
                except BaseException:  # noqa: BLE001 - the bug: a broad except
                    pass
            return torch.full((8,), float(i % 2)), i % 2

    before = signal.signal(signal.SIGINT, signal.default_int_handler)  # a test worker may ignore SIGINT
    try:
        report = nndoctor.check(nndoctor.Setup(model=nn.Linear(8, 2), train_data=Swallows(),
                                               loss_fn=nn.CrossEntropyLoss(), batch_size=16))
    finally:
        signal.signal(signal.SIGINT, before)
    assert report.meta["interrupted"] is True
    assert [c.name for c in report.checks if c.detail == INTERRUPTED]
    assert not [c for c in report.checks if c.step == "compare" and c.status == "passed"]
    assert signal.getsignal(signal.SIGINT) is before  # the handler is the caller's again
