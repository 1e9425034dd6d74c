"""FSDP2 (``fully_shard``) through real processes: `torchrun --nproc_per_node=2 -m nndoctor run` (gloo, CPU).

Parameters and gradients are DTensors, sharded across ranks: the live checks read each rank's local shard
(``probes/sharded.py``), never a collective, and the data-side distributed checks (DDP002, DDP003) apply as
under DDP. Each planted bug's twin is the clean script (no flag).
"""
from __future__ import annotations

import json
import os
import sys

import pytest
import torch
from ddp_helpers import SCRIPTS, serious, torchrun, validate_json

pytestmark = pytest.mark.skipif(sys.platform == "win32" or not torch.distributed.is_available(),
                                reason="gloo torchrun test on POSIX")
SCRIPT = os.path.join(SCRIPTS, "train_fsdp.py")


def run_fsdp(tmp_path, *flags: str):
    path = tmp_path / "fsdp.json"
    out = torchrun("-m", "nndoctor", "run", "--json", str(path), SCRIPT, *flags)
    assert path.exists(), out.stdout[-3000:] + out.stderr[-3000:]
    doc = json.loads(path.read_text())
    validate_json(doc)
    return out, doc


# flags planting the bug -> (code, location substring)
PLANTED = [
    pytest.param(["--no-set-epoch"], "DDP002", "sampler", marks=pytest.mark.slow),  # the DDP tests cover DDP002 by default
    pytest.param(["--lr0"], "GRD002", "optimizer", marks=pytest.mark.slow),  # the sharded weights never move: seen on each rank's shard
]


@pytest.mark.parametrize("flags,code,location", PLANTED, ids=[c for _, c, _ in (getattr(p, "values", p) for p in PLANTED)])
def test_planted_fsdp_bug_is_found_on_every_rank(tmp_path, flags, code, location):
    out, doc = run_fsdp(tmp_path, *flags)
    assert "Redistribution" not in out.stderr, out.stderr[-3000:]  # DTensor read as a whole: nndoctor's crash
    assert not [f for f in doc["findings"] if f["code"].startswith("RUN")], doc["findings"]
    found = [f for f in doc["findings"] if f["code"] == code]
    assert found, (out.stdout[-2000:], out.stderr[-2000:])
    assert location in found[0]["location"]
    assert found[0]["evidence"]["ranks"] == [0, 1]
    assert doc["meta"]["ranks_reported"] == [0, 1] and doc["meta"]["world_size"] == 2
    assert out.stdout.count(f"{code} ") == 1, "only rank 0 prints the report"


@pytest.mark.slow  # torchrun pair (~15 s each); the shard reading is tested in one process by default
def test_clean_fsdp_script_reports_nothing(tmp_path):
    out, doc = run_fsdp(tmp_path)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-3000:]
    assert serious(doc) == [], serious(doc)
    assert doc["meta"]["ranks_reported"] == [0, 1]
    assert "rank 1 done" in out.stdout and "epoch 2" in out.stdout  # the script's own output is untouched


def test_a_dtensor_is_read_as_its_local_shard_without_communication():
    # a one-process gloo group and a CPU device mesh: DTensor's machinery without a second process
    import torch.distributed as dist
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.tensor import Shard, distribute_tensor

    from nndoctor.probes.sharded import is_sharded, local, local_all

    own_group = not dist.is_initialized()
    if own_group:
        dist.init_process_group("gloo", store=dist.HashStore(), rank=0, world_size=1)  # no port needed
    try:
        mesh = init_device_mesh("cpu", (1,))
        full = torch.arange(6.0).reshape(3, 2)
        sharded = distribute_tensor(full, mesh, [Shard(0)])
        assert is_sharded(sharded) and not is_sharded(full)
        shard = local(sharded)
        assert type(shard) is torch.Tensor and torch.equal(shard, full)
        assert local(full) is full and local(None) is None
        assert [type(t) for t in local_all([sharded, full])] == [torch.Tensor, torch.Tensor]
        assert torch.stack(torch._foreach_norm(local_all([sharded]))).item() == pytest.approx(full.norm().item())
    finally:
        if own_group:
            dist.destroy_process_group()
