"""Running scripts under torchrun for the DDP tests (two processes, gloo, CPU) and reading their reports."""
from __future__ import annotations

import json
import os
import subprocess
import sys

SCRIPTS = os.path.join(os.path.dirname(__file__), "scripts")
SCRIPT = os.path.join(SCRIPTS, "train_ddp.py")


def validate_json(doc: dict) -> None:
    """The merged report against the JSON Schema that ships in the package."""
    from importlib import resources

    import jsonschema

    jsonschema.validate(doc, json.loads(resources.files("nndoctor.report").joinpath("schema.json").read_text()))


def torchrun(*args: str, timeout: float = 240) -> subprocess.CompletedProcess:
    # `python -m torch.distributed.run` is torchrun; --standalone picks a free port, so tests can run side by side
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", *args]
    env = {**os.environ, "NO_COLOR": "1", "OMP_NUM_THREADS": "1"}
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)


def run_ddp(tmp_path, *flags: str, options: tuple[str, ...] = ()):
    """`torchrun -m nndoctor run --json ... train_ddp.py FLAGS`: the completed process and the merged report."""
    path = tmp_path / "ddp.json"
    out = torchrun("-m", "nndoctor", "run", "--json", str(path), *options, SCRIPT, *flags)
    assert path.exists(), out.stdout[-3000:] + out.stderr[-3000:]
    doc = json.loads(path.read_text())
    validate_json(doc)
    return out, doc


def serious(doc) -> list[dict]:
    return [f for f in doc["findings"] if f["severity"] in ("error", "warning")]
