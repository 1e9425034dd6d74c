"""The live checks: each watcher (it measures, ``nndoctor/probes/watchers/``) with the judge that reads
it (``nndoctor/checks/``). The Monitor hub builds one of each per run, in this order, and never names a
watcher itself.

Adding a live check (say, learning-rate schedules):
  1. ``probes/watchers/lr_schedule.py``: a ``Watcher`` subclass with a ``name``, a one-line ``describe()``
     and only the event methods it needs (``live/events.py`` declares them; one that returns ``DONE`` is not
     called for that event again). Per-step device numbers go in
     ``reads(optimizer)`` and come back as floats in ``on_read``: the hub reads every watcher's in one host
     transfer. Shared facts (steps, losses, the roots, the optimizer's parameters) are on ``self.run``.
  2. A judge ``judge(watcher) -> list[Finding]`` in the ``checks/`` module of its concern.
  3. One line below; its code(s) in ``catalogue/<family>.py`` and ``INTERFACE.md``.
  4. Tests: the planted bug (code, location) and its clean twin (silent), in a loop under ``Monitor``.
No existing watcher and not the hub change. Order matters only for readers of ``run.step_loss``: they come
after ``CurveWatcher``, which sets it at each step.
"""
from __future__ import annotations

from typing import Callable, NamedTuple

from nndoctor.checks import distributed, live_causes, live_curve, live_errors, live_gradients, live_numerics, modes
from nndoctor.findings import Finding
from nndoctor.probes.watchers.base import Watcher
from nndoctor.probes.watchers.curve import CurveWatcher
from nndoctor.probes.watchers.errors import ErrorsWatcher
from nndoctor.probes.watchers.loss_sign import LossSignWatcher
from nndoctor.probes.watchers.modes import ModesWatcher
from nndoctor.probes.watchers.non_finite import NonFiniteWatcher
from nndoctor.probes.watchers.optimizer import OptimizerWatcher
from nndoctor.probes.watchers.ranks import RanksWatcher
from nndoctor.probes.watchers.stale_gradients import StaleGradientsWatcher
from nndoctor.checks import live_precision, live_step_order
from nndoctor.probes.watchers.amp import AmpWatcher
from nndoctor.probes.watchers.step_order import StepOrderWatcher
from nndoctor.checks import live_schedule
from nndoctor.probes.watchers.lr_schedule import LRScheduleWatcher
from nndoctor.checks import functional_modes
from nndoctor.probes.watchers.functional_modes import FunctionalModesWatcher
from nndoctor.checks import live_loss
from nndoctor.probes.watchers.compiled import CompiledWatcher
from nndoctor.probes.watchers.loss_inputs import LossInputsWatcher
from nndoctor.probes.watchers.sequences import SequencesWatcher
from nndoctor.probes.watchers.padding import PaddingWatcher
from nndoctor.checks import live_efficiency
from nndoctor.probes.watchers.data_wait import DataWaitWatcher
from nndoctor.probes.watchers.gpu_usage import GpuUsageWatcher
from nndoctor.probes.watchers.weight_decay import WeightDecayWatcher


class LiveCheck(NamedTuple):
    watcher: type[Watcher]
    judge: Callable[[Watcher], list[Finding]]


LIVE_CHECKS: list[LiveCheck] = [
    LiveCheck(CurveWatcher, live_causes.judge_curve),  # the curve's findings, causes named from the LR schedule
    LiveCheck(LRScheduleWatcher, live_schedule.judge),  # sets run.lr_schedule, read by judge_curve
    LiveCheck(ErrorsWatcher, live_errors.judge),
    LiveCheck(NonFiniteWatcher, live_numerics.judge),
    LiveCheck(ModesWatcher, modes.judge_live),
    LiveCheck(FunctionalModesWatcher, functional_modes.judge),
    LiveCheck(StaleGradientsWatcher, live_gradients.judge_stale),
    LiveCheck(OptimizerWatcher, live_gradients.judge_updates),
    LiveCheck(LossSignWatcher, live_curve.judge_loss_sign),
    LiveCheck(RanksWatcher, distributed.judge_rank),
    LiveCheck(StepOrderWatcher, live_step_order.judge),  # after CurveWatcher: reads run.step_norm
    LiveCheck(AmpWatcher, live_precision.judge),
    LiveCheck(CompiledWatcher, live_loss.judge_compiled),  # which roots were compiled
    LiveCheck(LossInputsWatcher, live_loss.judge_loss_inputs),  # sets run.loss_target_shape, read by SequencesWatcher
    LiveCheck(SequencesWatcher, live_loss.judge_sequences),
    LiveCheck(PaddingWatcher, live_loss.judge_padding),
    LiveCheck(DataWaitWatcher, live_efficiency.judge_data_wait),  # EFF001
    LiveCheck(WeightDecayWatcher, live_efficiency.judge_weight_decay),  # EFF002
    LiveCheck(GpuUsageWatcher, live_efficiency.judge_gpu),  # EFF003-EFF005
]
