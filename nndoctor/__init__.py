"""nndoctor: runs the deep-learning troubleshooting playbook on a PyTorch training setup.

Importing nndoctor never imports a training framework (Lightning, Keras, transformers).
"""
from nndoctor._version import __version__
from nndoctor.findings import CheckRecord, Finding
from nndoctor.report.model import Report
from nndoctor.catalogue import Severity
from nndoctor.spec import KnownResult, Setup, SetupError
from nndoctor.playbook import check

__all__ = [
    "__version__",
    "check",
    "compare_models",
    "Monitor",
    "Setup",
    "KnownResult",
    "Report",
    "Finding",
    "CheckRecord",
    "Severity",
    "SetupError",
]


def __getattr__(name: str):
    # Heavier entry points load on first use, keeping `import nndoctor` fast.
    if name == "Monitor":
        from nndoctor.live.monitor import Monitor

        return Monitor
    if name == "compare_models":
        from nndoctor.reference import compare_models

        return compare_models
    raise AttributeError(f"module 'nndoctor' has no attribute {name!r}")
