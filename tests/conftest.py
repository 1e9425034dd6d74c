from __future__ import annotations

import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(__file__))  # `from cases import ...`

os.environ.setdefault("NO_COLOR", "1")

if os.environ.get("PYTEST_XDIST_WORKER"):
    # Two workers on two cores: one torch thread each avoids oversubscription (measured: 2 threads per
    # process on a busy 2-core machine made training steps up to 20x slower).
    import torch

    torch.set_num_threads(1)


@pytest.fixture
def one_thread():
    """One torch thread for the test (restored after): two on a busy 2-core machine make each of a small
    model's steps many times slower. Files that train copies use it for every test (``usefixtures``)."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def artifacts_dir() -> str:
    path = os.path.join(os.path.dirname(os.path.dirname(__file__)), "artifacts")
    os.makedirs(path, exist_ok=True)
    return path
