"""The CLI as a user runs it: the installed `nndoctor` command in a subprocess."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest

from nndoctor.playbook import QUICK_BUDGET

HERE = os.path.dirname(__file__)
FILES = os.path.join(HERE, "files")
CLEAN = os.path.join(FILES, "clean_setup.py")


def nndoctor(*args: str, cwd: str | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
    exe = shutil.which("nndoctor")
    cmd = [exe] if exe else [sys.executable, "-m", "nndoctor"]
    env = {**os.environ, "NO_COLOR": "1"}
    return subprocess.run(cmd + list(args), capture_output=True, text=True, cwd=cwd, timeout=timeout, env=env)


# What was tried, and the words the one-line error must contain.
BAD_INPUT = [
    (["check", "no/such/file.py"], "not found"),
    (["check", FILES], "directory"),
    (["check", os.path.join(FILES, "syntax_error.py")], "syntax error"),
    (["check", os.path.join(FILES, "import_error.py")], "definitely_not_a_module_xyz"),
    (["check", CLEAN + ":nope"], "no function 'nope'"),
    (["check", CLEAN + ":needs_args"], "no arguments"),
    (["check", CLEAN + ":not_a_setup"], "returned int"),
    (["check", CLEAN + ":raises"], "cannot build my model"),
    (["check", CLEAN + ":invalid_setup"], "nn.Module"),
    (["check", CLEAN, "--select", "LOS01"], "LOS001"),
    (["check", CLEAN, "--ignore", "nonsense-code"], "unknown code"),
    (["check", CLEAN, "--budget", "-3"], "positive"),
    (["check", CLEAN, "--budget", "soon"], "number"),
    (["check", CLEAN, "--seed", "x"], "invalid int"),
    (["check", CLEAN, "--memory", "lots"], "not understood"),
    (["check", CLEAN, "--json", "/no/such/dir/r.json"], "does not exist"),
    (["check", CLEAN, "--frobnicate"], "unrecognized"),
    (["check"], "required"),
    (["codes", "XYZ999"], "unknown code"),
    (["run", "no_such_script.py"], "not found"),
    (["run", "--max-steps", "0", CLEAN], "positive"),
    (["bogus"], "invalid choice"),
]


@pytest.mark.parametrize("args,words", BAD_INPUT, ids=[" ".join(a)[-40:] for a, _ in BAD_INPUT])
def test_bad_input_exits_2_with_one_clear_line(args, words):
    out = nndoctor(*args)
    assert out.returncode == 2, (out.stdout, out.stderr)
    lines = [line for line in out.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, out.stderr
    assert "Traceback" not in out.stderr
    assert words.lower() in lines[0].lower(), lines[0]


def test_clean_model_exits_0_with_no_error_or_warning(tmp_path):
    path = tmp_path / "r.json"
    out = nndoctor("check", CLEAN, "--json", str(path))
    assert out.returncode == 0, out.stdout + out.stderr
    doc = json.loads(path.read_text())
    assert [f for f in doc["findings"] if f["severity"] in ("error", "warning")] == []
    assert doc["checks"] and all(c["status"] != "crashed" for c in doc["checks"])


def test_crashing_model_exits_1_with_run001_located(tmp_path):
    path = tmp_path / "r.json"
    out = nndoctor("check", CLEAN + ":wrong_in_features", "--json", str(path))
    assert out.returncode == 1, out.stdout + out.stderr
    doc = json.loads(path.read_text())
    run001 = [f for f in doc["findings"] if f["code"] == "RUN001"]
    assert run001 and run001[0]["location"] == "model.2"
    assert "RUN001" in out.stdout and "model.2" in out.stdout
    assert "Traceback" not in out.stdout + out.stderr


def test_select_and_ignore_filter_findings(tmp_path):
    path = tmp_path / "r.json"
    out = nndoctor("check", CLEAN + ":wrong_in_features", "--ignore", "RUN", "--json", str(path))
    doc = json.loads(path.read_text())
    assert not [f for f in doc["findings"] if f["code"].startswith("RUN")]
    assert out.returncode == 0


def test_codes_lists_every_family():
    out = nndoctor("codes")
    assert out.returncode == 0
    for family in ("RUN", "SHP", "DAT", "LOS", "MOD", "NUM", "GRD", "OFB", "CMP", "DDP"):
        assert family in out.stdout
    assert "LOS001" in out.stdout and "probabilities-to-logit-loss" in out.stdout
    assert max(len(line) for line in out.stdout.splitlines()) <= 100


def test_demo_finds_its_planted_bugs(tmp_path):
    path = tmp_path / "demo.json"
    out = nndoctor("demo", "--json", str(path))
    assert out.returncode == 0, out.stdout + out.stderr
    codes = {f["code"] for f in json.loads(path.read_text())["findings"]}
    assert {"LOS001", "DAT001"} <= codes
    assert "nndoctor check" in out.stdout


# ----- --quick and --thorough ----------------------------------------------------------------------
def test_quick_finds_a_planted_bug_and_skips_the_compare_step():
    from cases.los_cases import _softmax_head

    from helpers import run_checked

    for fixed in (False, True):  # the planted softmax head, and its twin without it
        report = run_checked(_softmax_head(fixed=fixed), mode="quick")
        los001 = [f for f in report.findings if f.code == "LOS001"]
        assert bool(los001) is not fixed, [f.code for f in report.findings]
        if los001:
            assert los001[0].location == "model.head.2"
        assert report.meta["mode"] == "quick"
        compare = [c for c in report.checks if c.step == "compare"]
        assert compare and all(c.status == "skipped" and c.detail == "quick mode" for c in compare)
        memory = [c for c in report.checks if c.name == "memory-fit"]
        assert all(c.detail == "quick mode" for c in memory)  # no memory search without a memory budget
        assert report.meta["budget_seconds"] == QUICK_BUDGET


def test_quick_and_thorough_on_the_command_line(tmp_path):
    path = tmp_path / "r.json"
    out = nndoctor("check", CLEAN + ":wrong_in_features", "--thorough", "--json", str(path))
    assert out.returncode == 1, out.stdout + out.stderr  # RUN001, as without the flag
    doc = json.loads(path.read_text())
    assert doc["meta"]["mode"] == "thorough" and doc["meta"]["budget_seconds"] == 900
    out = nndoctor("check", CLEAN, "--quick", "--thorough")
    assert out.returncode == 2 and "not allowed with" in out.stderr
    assert "--quick" in nndoctor("check", "--help").stdout
