"""Distributed runs (DDP001-DDP004): what this rank saw (``probes/rank_facts.py``), and the store that
carries it to rank 0 (``probes/rank_exchange.py``). An ordinary single-process run pays nothing per step."""
from __future__ import annotations

from torch import nn

from nndoctor.probes.rank_exchange import RankExchange
from nndoctor.probes.rank_facts import RankFacts, world
from nndoctor.probes.watchers.base import Watcher


class RanksWatcher(Watcher):
    name = "ranks"

    def __init__(self, run) -> None:
        super().__init__(run)
        self.facts = RankFacts(before_group_destroyed=self._before_group_destroyed)
        self.exchange = RankExchange()

    def start(self) -> None:
        self.facts.__enter__()

    def stop(self) -> None:
        self.facts.__exit__(None, None, None)

    def on_forward(self, module: nn.Module, inputs: tuple, kwargs: dict, training_step: bool) -> None:
        if self.run.trains:  # a training forward of a trainable root (the hub's saw_forward says so)
            self.facts.on_training_forward(module, inputs)

    def on_before_optimizer_step(self, optimizer) -> None:
        self.facts.on_step()

    def on_after_optimizer_step(self, optimizer) -> None:
        if self.facts.after_step(self.run.steps):
            self.exchange.remember_store()

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
