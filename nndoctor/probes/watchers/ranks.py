"""Distributed runs (DDP001-DDP004): what this rank saw (``probes/rank_facts.py``), and the store that
carries it to rank 0 (``probes/rank_exchange.py``). An ordinary single-process run pays nothing per step."""
from __future__ import annotations

from typing import Any

from torch import nn

from nndoctor.probes.rank_exchange import RankExchange
from nndoctor.probes.rank_facts import RankFacts, world
from nndoctor.probes.watchers.base import DONE, Watcher


class RanksWatcher(Watcher):
    name = "ranks"

    def __init__(self, run) -> None:
        super().__init__(run)
        self.facts = RankFacts(before_group_destroyed=self._before_group_destroyed)
        self.exchange = RankExchange()
        self.single = False  # the first training forward found a single process: nothing to watch per step

    def start(self) -> None:
        self.facts.__enter__()

    def stop(self) -> None:
        self.facts.__exit__(None, None, None)

    def on_forward(self, module: nn.Module, inputs: tuple, kwargs: dict, training_step: bool) -> Any:
        if self.run.trains:  # a training forward of a trainable root (the hub's saw_forward says so)
            # The first one decides: a distributed run has its process group (or torchrun's environment) by then.
            if not self.facts.distributed():
                self.single = True
                return DONE
            self.facts.on_training_forward(module, inputs)
        return None

    def on_before_optimizer_step(self, optimizer) -> Any:
        if self.single:
            return DONE
        self.facts.on_step()
        return None

    def on_after_optimizer_step(self, optimizer) -> Any:
        if self.single:
            return DONE
        if self.facts.after_step(self.run.steps):
            self.exchange.remember_store()
        return None

    def _before_group_destroyed(self) -> None:
        """The script is destroying its process group: keep its store and measure the model while both live."""
        try:
            self.exchange.remember_store()
            self.facts.take_checksums(self.run.steps)
        except Exception:  # never let the watcher break the user's shutdown
            pass

    def describe(self) -> str:
        rank, size = world()
        return "a single process" if size <= 1 else f"rank {rank} of {size}: replicas, samplers, data shards"
