"""The Monitor API and the framework callbacks under torchrun (two processes, gloo, CPU): every rank
calls report(), rank 0 receives the merged report."""
from __future__ import annotations

import json
import os
import sys

import pytest

from ddp_helpers import SCRIPT, SCRIPTS, serious, torchrun, validate_json

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="gloo torchrun test on POSIX")


def test_monitor_api_merges_the_ranks_on_rank_0(tmp_path):
    path = tmp_path / "monitor.json"
    out = torchrun(SCRIPT, "--with-monitor", str(path), "--no-sampler")
    assert out.returncode == 0, out.stderr[-3000:]
    doc = json.loads(path.read_text())
    assert [f["code"] for f in serious(doc)] == ["DDP003"]
    assert doc["meta"]["ranks_reported"] == [0, 1]


def test_monitor_api_clean_twin_is_silent(tmp_path):
    path = tmp_path / "monitor.json"
    out = torchrun(SCRIPT, "--with-monitor", str(path))
    assert out.returncode == 0, out.stderr[-3000:]
    assert serious(json.loads(path.read_text())) == []


# ----- frameworks under torchrun: the callback on every rank, one merged report ---------------------------------
FRAMEWORKS = [  # (extra, script, flags, expected codes): each planted run next to its clean twin
    # each run ~15-25 s: with -m slow; the Monitor API pair above runs by default
    pytest.param("lightning.pytorch", "lightning_ddp.py", ["--batch", "8"], ["DDP004"], marks=pytest.mark.slow),  # 8 per rank
    pytest.param("lightning.pytorch", "lightning_ddp.py", ["--batch", "32"], [], marks=pytest.mark.slow),
    pytest.param("transformers", "hf_ddp.py", ["--lr", "0"], ["GRD002"], marks=pytest.mark.slow),  # no DDP003: accelerate shards
    pytest.param("transformers", "hf_ddp.py", ["--lr", "5e-4"], [], marks=pytest.mark.slow),
]


@pytest.mark.parametrize("extra,script,flags,expected", FRAMEWORKS,
                         ids=["lightning-bn-8", "lightning-bn-32", "hf-lr-0", "hf-clean"])
def test_framework_callbacks_merge_the_ranks(tmp_path, extra, script, flags, expected):
    pytest.importorskip(extra)
    path = tmp_path / "report.json"
    out = torchrun(os.path.join(SCRIPTS, script), str(path), *flags)
    assert out.returncode == 0, out.stderr[-3000:]
    doc = json.loads(path.read_text())
    validate_json(doc)
    assert [f["code"] for f in serious(doc)] == expected
    assert all(f["evidence"]["ranks"] == [0, 1] for f in serious(doc))
    assert doc["meta"]["ranks_reported"] == [0, 1]
