"""nndoctor in a Jupyter notebook: a notebook executed headlessly (nbclient, a real ipykernel) shows the
Report as HTML, ``print(report)`` as the terminal's plain text, and progress as one line updated in place."""
from __future__ import annotations

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")

SETUP_CELL = """\
import torch
from torch import nn
from sklearn.datasets import load_digits
import nndoctor

digits = load_digits()
x = torch.tensor(digits.data, dtype=torch.float32) / 16.0
y = torch.tensor(digits.target)
torch.manual_seed(0)
model = nn.Sequential(nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 10), nn.Softmax(dim=1))  # the planted bug
setup = nndoctor.Setup(model=model, train_data=(x[:1400], y[:1400]), val_data=(x[1400:], y[1400:]),
                       loss_fn=nn.CrossEntropyLoss(), optimizer=lambda p: torch.optim.Adam(p, lr=1e-3))
"""
CHECK_CELL = 'report = nndoctor.check(setup, select="LOS", budget=60)\nreport'
PRINT_CELL = "print(report)"


def _run(tmp_path) -> "nbformat.NotebookNode":
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(c) for c in (SETUP_CELL, CHECK_CELL, PRINT_CELL)]
    client = nbclient.NotebookClient(nb, timeout=300, kernel_name="python3",
                                     resources={"metadata": {"path": str(tmp_path)}})
    try:  # no kernel (no kernelspec, sockets forbidden): nothing to test here, not a failure
        client.km = client.create_kernel_manager()
        client.start_new_kernel()
        client.start_new_kernel_client()
    except Exception as exc:
        if client.km is not None and client.km.has_kernel:
            client.km.shutdown_kernel(now=True)
        pytest.skip(f"no Jupyter kernel could start: {type(exc).__name__}: {exc}")
    client.execute()  # a failing cell raises CellExecutionError: a real failure
    return nb


def test_an_executed_notebook_shows_the_report(tmp_path):
    nb = _run(tmp_path)
    check_outputs, print_outputs = nb.cells[1].outputs, nb.cells[2].outputs

    html = [o["data"]["text/html"] for o in check_outputs if "text/html" in o.get("data", {})]
    assert len(html) == 1 and "LOS001" in html[0]
    # the page sits in a sandboxed iframe: its styles and markup cannot reach the notebook's
    assert html[0].startswith("<iframe srcdoc=") and 'sandbox=""' in html[0] and "<style>" not in html[0]

    # progress: one line updated in place, ending with the time taken (not one line per message)
    progress = [o for o in check_outputs if o.get("output_type") == "display_data"
                and "text/html" not in o.get("data", {})]
    assert len(progress) == 1 and progress[0]["data"]["text/plain"].startswith("nndoctor: finished in")

    text = "".join(o.get("text", "") for o in print_outputs if o.get("output_type") == "stream")
    assert "ERROR    LOS001 probabilities-to-logit-loss" in text and "verdict: fix 1 error first (LOS001)" in text
    assert "\x1b[" not in text  # plain text: no colour codes in a notebook or a log
