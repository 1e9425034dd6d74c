"""`nndoctor run` on unmodified scripts, through the real CLI: planted bugs and their clean twins."""
from __future__ import annotations

import json
import os

import pytest

from test_cli import nndoctor

SCRIPT = os.path.join(os.path.dirname(__file__), "scripts", "train_digits.py")

# flags planting the bug -> (code, location substring); the clean twin is the script without the flag
PLANTED = [
    (["--no-zero-grad"], "GRD005", "optimizer"),
    (["--eval-mode-training"], "MOD001", "model"),
    pytest.param(["--eval-in-train-mode"], "MOD002", "model", marks=pytest.mark.slow),  # in-process: test_monitor_loops
    pytest.param(["--foreign-optimizer"], "GRD002", "model.body", marks=pytest.mark.slow),
    (["--nan"], "NUM001", "train_digits.py:"),
    (["--crash"], "RUN001", "model.body.0"),
    (["--lr", "50", "--epochs", "2"], "OFB002", "loss curve"),
    (["--ascent"], "OFB001", "train_digits.py:"),  # minus the loss: the error rises while the loss falls
    pytest.param(["--lr", "1"], "OFB002", "loss curve", marks=pytest.mark.slow),  # blows up at once, then never gets below the untrained loss
    pytest.param(["--lr", "1e-6"], "OFB004", "loss curve", marks=pytest.mark.slow),  # far too low: a plateau
    pytest.param(["--shuffled-labels"], "OFB004", "loss curve", marks=pytest.mark.slow),  # labels unrelated to inputs: nothing to learn
]


def run(tmp_path, *args: str):
    path = tmp_path / "r.json"
    out = nndoctor("run", "--json", str(path), SCRIPT, *args)
    return out, json.loads(path.read_text())


@pytest.mark.parametrize("flags,code,location", PLANTED, ids=[c for _, c, _ in (getattr(p, "values", p) for p in PLANTED)])
def test_planted_script_bug_is_found(tmp_path, flags, code, location):
    out, doc = run(tmp_path, *flags)
    found = [f for f in doc["findings"] if f["code"] == code]
    assert found, (out.stdout[-2000:], out.stderr[-2000:])
    assert location in found[0]["location"]


@pytest.mark.parametrize("flags", [[], pytest.param(["--schedule", "--lr", "0.01"], marks=pytest.mark.slow)], ids=["plain", "lr-schedule"])
def test_clean_scripts_report_nothing(tmp_path, flags):
    out, doc = run(tmp_path, *flags)
    assert out.returncode == 0, out.stdout + out.stderr
    assert [f for f in doc["findings"] if f["severity"] in ("error", "warning")] == []
    assert "val acc" in out.stdout  # the script's own output is untouched


@pytest.mark.slow
def test_max_steps_stops_cleanly(tmp_path):
    path = tmp_path / "s.json"
    res = nndoctor("run", "--max-steps", "5", "--json", str(path), SCRIPT, "--epochs", "50")
    assert res.returncode == 0, res.stderr
    assert json.loads(path.read_text())["meta"]["steps"] == 5
    assert "--max-steps" in res.stdout


def test_crash_keeps_the_script_exit_status_and_traceback(tmp_path):
    out, doc = run(tmp_path, "--crash")
    assert out.returncode == 1
    assert "Traceback" in out.stderr and "mat1 and mat2" in out.stderr  # as python would print it


def test_script_sees_main_and_argv(tmp_path):
    script = tmp_path / "argv.py"
    script.write_text("import sys\nif __name__ == '__main__':\n    print('ARGV', sys.argv[1:])\n    sys.exit(3)\n")
    out = nndoctor("run", str(script), "a", "--b")
    assert "ARGV ['a', '--b']" in out.stdout
    assert out.returncode == 3


def test_a_script_without_training_says_it_saw_no_step(tmp_path):
    script = tmp_path / "no_training.py"
    script.write_text("print('just printing')\n")
    out = nndoctor("run", str(script))
    assert out.returncode == 0 and "just printing" in out.stdout
    assert "no optimizer step ran in this process" in " ".join(out.stdout.split())  # the title may wrap


def test_run_takes_select_and_ignore_as_its_hints_say(tmp_path):
    out, doc = run(tmp_path, "--no-zero-grad")
    assert "silence with `--ignore GRD005`" in out.stdout
    path = tmp_path / "ignored.json"
    ignored = nndoctor("run", "--ignore", "GRD005", "--json", str(path), SCRIPT, "--no-zero-grad")
    assert ignored.returncode == 0 and "GRD005" not in [f["code"] for f in json.loads(path.read_text())["findings"]]
    bad = nndoctor("run", "--ignore", "GRD05", SCRIPT)
    assert bad.returncode == 2 and "GRD005" in bad.stderr
