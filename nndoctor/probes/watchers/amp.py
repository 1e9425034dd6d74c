"""Mixed precision: the loss passed to backward (or to ``GradScaler.scale``) computed in float16/bfloat16, and
the steps a GradScaler skipped because its gradients held Inf/NaN. Device-side counters only (no transfer on
the hot path), read once at the end of the run."""
from __future__ import annotations

import contextlib
import sys
from typing import Any, Iterator

import torch

from nndoctor.probes.errors import user_call_site
from nndoctor.probes.watchers.base import Watcher, outside_nndoctor

LOW = (torch.float16, torch.bfloat16)
_DEVICES = ("cpu", "cuda")
_any_autocast = getattr(torch._C, "_is_any_autocast_enabled", lambda: True)  # (a torch without it: ask each device)
_KEPT = 100_000  # scaler steps whose skip flag is kept (4 bytes each, on the scaler's device)


class AmpWatcher(Watcher):
    name = "mixed-precision"

    def __init__(self, run) -> None:
        super().__init__(run)
        self._patches = self.patches()
        self.low_losses = 0  # backward calls on a float16/bfloat16 loss
        self.low_dtype = ""
        self.low_site = ""
        self._low_bad: torch.Tensor | None = None  # device count of non-finite low-precision losses
        self._low_last: torch.Tensor | None = None
        self.low_non_finite = 0
        self.low_last = float("nan")
        self._scaled_id: int | None = None  # scaler.scale's output: its input was judged already
        self.scaler_steps = 0
        self.scaler_site = ""
        self._skipped: list[torch.Tensor] = []  # per scaler step, a device flag: skipped for Inf/NaN gradients
        self.skipped = 0
        self.leading_skipped = 0  # skipped before the first step that applied: the scale finding its level
        self.first_scale = float("nan")
        self.last_scale = float("nan")
        self._scaler: Any = None
        self.births: list = []  # where a replay of the last forward first made NaN/Inf (when most steps skipped)


    def start(self) -> None:
        try:
            from torch.amp.grad_scaler import GradScaler

            self._patches.method(GradScaler, "scale", None, self._after_scale)
            self._patches.method(GradScaler, "step", None, self._after_step)
        except Exception:
            self.stop()
            self.broken = True

    def stop(self) -> None:
        self._patches.undo()

    # ----- the autocast state of training forwards (a replay of the step runs under the same) ---------------
    def on_forward(self, module, inputs, kwargs, training_step: bool) -> None:
        if training_step and not self.broken:
            if not _any_autocast():  # one C call on the usual path
                self.run.autocast = ()
                return
            try:
                on = [d for d in _DEVICES if torch.is_autocast_enabled(d)]
                self.run.autocast = tuple((d, torch.get_autocast_dtype(d)) for d in on) if on else ()
            except Exception:
                self.run.autocast = ()

    # ----- the loss -----------------------------------------------------------------------------------
    def _loss(self, loss: torch.Tensor) -> None:
        if loss.dtype not in LOW or loss.numel() != 1:
            return
        self.low_losses += 1
        if not self.low_site:
            self.low_dtype = str(loss.dtype).replace("torch.", "")
            self.low_site = user_call_site(outside_nndoctor(sys._getframe(1)))[0]
        bad = (~torch.isfinite(loss.detach())).sum()
        self._low_bad = bad if self._low_bad is None else self._low_bad + bad
        self._low_last = loss.detach()

    def on_backward(self, loss: torch.Tensor) -> None:
        if self.broken or self.run.replaying or (self._scaled_id is None and loss.dtype not in LOW):
            return  # (the usual float32 loss: one test)
        try:
            if id(loss) != self._scaled_id:
                self._loss(loss)
            self._scaled_id = None
        except Exception:
            self.broken = True

    def _after_scale(self, result: Any, scaler, outputs: Any, *args: Any, **kwargs: Any) -> None:
        if isinstance(outputs, torch.Tensor) and scaler.is_enabled():
            self._scaled_id = id(result)
            self._loss(outputs)

    # ----- GradScaler -----------------------------------------------------------------------------------
    def _after_step(self, result: Any, scaler, optimizer, *args: Any, **kwargs: Any) -> None:
        if not scaler.is_enabled() or (self._scaler is not None and scaler is not self._scaler):
            return
        state = scaler._per_optimizer_states[id(optimizer)]
        found = sum(v.to(scaler._scale.device).sum() for v in state["found_inf_per_device"].values())
        if not isinstance(found, torch.Tensor):
            return
        found = (found > 0).to(torch.int32)  # this step was skipped
        self.scaler_steps += 1
        if self._scaler is None:
            self._scaler = scaler
            self.scaler_site = user_call_site(outside_nndoctor(sys._getframe(1)))[0]
            self._first_scale = scaler._scale.detach().clone()
        if len(self._skipped) < _KEPT:
            self._skipped.append(found)

    def on_run_end(self) -> None:
        self.stop()
        try:
            if self._low_bad is not None:
                self.low_non_finite, self.low_last = int(self._low_bad), float(self._low_last)
            if self._skipped:
                flags = [bool(v) for v in torch.stack(self._skipped).tolist()]
                self.skipped = sum(flags)
                self.leading_skipped = next((i for i, f in enumerate(flags) if not f), len(flags))
                self.first_scale = float(self._first_scale)
                self.last_scale = float(self._scaler._scale)
        except Exception:
            pass
        if self.skipped >= 5 and 2 * self.skipped >= self.scaler_steps:
            self.births = self._replay()

    def _replay(self) -> list:
        """The skipped steps never reach the optimizer's hooks, where the non-finite watcher replays a step:
        replay the last training forward here, on a copy, under its autocast, for the op that overflows."""
        call = self.run.last_train_call
        if call is None:
            return []
        import copy

        from nndoctor.probes.nonfinite import FirstNonFinite

        module, inputs, kwargs = call
        self.run.replaying = True
        try:
            replica = copy.deepcopy(module)
            with torch.no_grad(), replay_autocast(self.run), FirstNonFinite(replica) as probe:
                replica(*inputs, **kwargs)
            return probe.births
        except Exception:
            return []
        finally:
            self.run.replaying = False

    def describe(self) -> str:
        parts = [f"{self.low_losses} backward on a low-precision loss"]
        if self.scaler_steps:
            parts.append(f"GradScaler: {self.skipped} of {self.scaler_steps} steps skipped")
        return "; ".join(parts)


@contextlib.contextmanager
def replay_autocast(run: Any) -> Iterator[None]:
    """Autocast as it was at the last training forward (so that an op that overflows in float16 overflows
    again in a replay of the step, which runs outside the user's autocast block)."""
    with contextlib.ExitStack() as stack:
        for device, dtype in getattr(run, "autocast", ()):
            stack.enter_context(torch.autocast(device, dtype=dtype))
        yield
