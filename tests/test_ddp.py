"""DDP through real processes: `torchrun --nproc_per_node=2 -m nndoctor run` (gloo, CPU) on planted-bug
scripts and their clean twins; crashes and --max-steps. Rank 0 alone prints one merged report.
"""
from __future__ import annotations

import sys

import pytest

from ddp_helpers import SCRIPT, run_ddp, serious

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="gloo torchrun test on POSIX")


# flags planting the bug -> (code, location substring); each twin below differs only by the fix
PLANTED = [
    pytest.param(["--no-wrap", "--seed-by-rank"], "DDP001", "model.0", marks=pytest.mark.slow),  # twin: --seed-by-rank
    (["--rank0-reinit"], "DDP001", "model.0"),  # twin: the clean script
    (["--no-set-epoch"], "DDP002", "sampler"),
    pytest.param(["--no-sampler"], "DDP003", "data loader", marks=pytest.mark.slow),  # same seed: identical batches
    pytest.param(["--no-sampler", "--seed-by-rank"], "DDP003", "data loader", marks=pytest.mark.slow),  # shuffles of the whole dataset
    pytest.param(["--manual-batches", "--no-sampler"], "DDP003", "data loader", marks=pytest.mark.slow),  # the same slices
    pytest.param(["--iterable", "--no-sampler"], "DDP003", "data loader", marks=pytest.mark.slow),  # unsharded stream
    pytest.param(["--bn", "--batch", "8"], "DDP004", "model.1", marks=pytest.mark.slow),  # twin: --bn (32 per rank)
]
# the plain script runs by default; the other twins with -m slow (DDP004 is judged in one process by default:
# tests/test_distributed_rules.py)
CLEAN = [[], pytest.param(["--schedule"], marks=pytest.mark.slow), pytest.param(["--seed-by-rank"], marks=pytest.mark.slow),
         pytest.param(["--manual-batches"], marks=pytest.mark.slow), pytest.param(["--iterable"], marks=pytest.mark.slow), pytest.param(["--bn"], marks=pytest.mark.slow),
         pytest.param(["--val-all-ranks", "--bn"], marks=pytest.mark.slow)]


@pytest.mark.parametrize("flags,code,location", PLANTED,
                         ids=[f"{c}{''.join(f)}" for f, c, _ in (getattr(p, "values", p) for p in PLANTED)])
def test_planted_ddp_bug_is_found_and_names_the_ranks(tmp_path, flags, code, location):
    out, doc = run_ddp(tmp_path, *flags)
    found = [f for f in doc["findings"] if f["code"] == code]
    assert found, (out.stdout[-2000:], out.stderr[-2000:])
    assert location in found[0]["location"]
    assert found[0]["evidence"]["ranks"] == [0, 1]
    assert doc["meta"]["ranks_reported"] == [0, 1] and doc["meta"]["world_size"] == 2
    assert out.stdout.count(f"{code} ") == 1, "only rank 0 prints the report"
    assert out.returncode == (1 if found[0]["severity"] == "error" else 0), out.stderr[-2000:]


CLEAN_IDS = ["plain", "lr-schedule", "seed-by-rank", "manual-shards", "iterable-shards", "bn-32",
             "validation-on-every-rank"]


@pytest.mark.parametrize("flags", CLEAN, ids=CLEAN_IDS)
def test_clean_ddp_scripts_report_nothing(tmp_path, flags):
    out, doc = run_ddp(tmp_path, *flags)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    assert serious(doc) == [], serious(doc)
    assert doc["meta"]["ranks_reported"] == [0, 1]
    assert "val acc" in out.stdout and "rank 1 done" in out.stdout  # the script's own output is untouched
    assert out.stdout.count("nndoctor run") == 1


@pytest.mark.slow
def test_max_steps_stops_every_rank_and_exits_cleanly(tmp_path):
    out, doc = run_ddp(tmp_path, "--epochs", "50", options=("--max-steps", "5"))
    assert out.returncode == 0, out.stderr[-3000:]
    assert doc["meta"]["steps_per_rank"] == {"0": 5, "1": 5}
    assert serious(doc) == []


@pytest.mark.slow
def test_a_crash_on_every_rank_is_reported_once_with_the_exit_status(tmp_path):
    out, doc = run_ddp(tmp_path, "--crash")
    assert out.returncode != 0
    assert "mat1 and mat2" in out.stderr  # the script's own traceback, from its first frame as python prints it
    assert f'Traceback (most recent call last):\n  File "{SCRIPT}"' in out.stderr
    (crash,) = [f for f in doc["findings"] if f["code"] == "RUN001"]
    assert crash["location"] == "model.0" and crash["evidence"]["ranks"] == [0, 1]


@pytest.mark.slow
def test_a_crash_on_one_rank_is_reported_with_its_rank(tmp_path):
    # rank 0 waits in an all-reduce that rank 1 never joins: rank 1 reports alone after a bounded wait, or
    # rank 0, failing in turn, merges both; either way the crash is told with its rank and location
    out, doc = run_ddp(tmp_path, "--crash-rank", "1")
    assert out.returncode != 0
    (crash,) = [f for f in doc["findings"] if f["code"] == "RUN001"]
    assert crash["location"] == "model.0" and 1 in crash["evidence"]["ranks"]
