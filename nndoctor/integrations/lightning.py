"""Lightning: ``Trainer(callbacks=[NNDoctorCallback()])``, then ``callback.report()``."""
from __future__ import annotations

try:
    from lightning.pytorch import Callback
except ImportError:  # the standalone package name
    from pytorch_lightning import Callback  # type: ignore[no-redef]

from nndoctor.report.model import Report
from nndoctor.live.monitor import Monitor


class NNDoctorCallback(Callback):
    """Watches ``fit`` with a Monitor: Lightning's own torch optimizers and modules are seen through
    PyTorch's global hooks, so the findings are those ``nndoctor run`` gives for the same loop."""

    def __init__(self, max_steps: int | None = None) -> None:
        self.monitor = Monitor(max_steps=max_steps)

    def on_fit_start(self, trainer, pl_module) -> None:
        self.monitor.__enter__()

    def on_fit_end(self, trainer, pl_module) -> None:
        self.monitor.__exit__(None, None, None)

    def on_exception(self, trainer, pl_module, exception: BaseException) -> None:
        self.monitor.__exit__(type(exception), exception, exception.__traceback__)

    def report(self) -> Report:
        return self.monitor.report()
