"""Carry every rank's summary to rank 0 through the run's key-value store, never through a collective.

A collective (``all_gather_object``) hangs when one rank never reaches it, and needs a live process
group: many scripts destroy theirs before they return. The store does neither: each rank writes its
summary under its own key and rank 0 waits for the others with a timeout, then names those that
never reported. The other ranks wait (also bounded) until rank 0 has read them, which makes the
exchange a barrier: every rank leaves it together, as a clean distributed exit needs.
"""
from __future__ import annotations

import json
import os
import sys
from datetime import timedelta
from typing import Any

DEFAULT_TIMEOUT_S = 120.0
BRIEF_TIMEOUT_S = 15.0  # for a rank that crashed: the others may never arrive


def timeout_s() -> float:
    try:
        return float(os.environ.get("NNDOCTOR_RANK_TIMEOUT", DEFAULT_TIMEOUT_S))
    except ValueError:
        return DEFAULT_TIMEOUT_S


class RankExchange:
    rounds = 0  # exchanges so far in this process: every rank counts the same, so keys never collide

    def __init__(self) -> None:
        self._store: Any = None
        self.rank0_absent = False  # on a rank other than 0: rank 0 never read this rank's summary

    def remember_store(self) -> None:
        """Keep the process group's store (call while the group is alive: the script may destroy it)."""
        if self._store is not None:
            return
        try:
            import torch.distributed as dist

            if dist.is_available() and dist.is_initialized():
                self._store = dist.distributed_c10d._get_default_store()
        except (ImportError, RuntimeError, ValueError):
            pass

    def _client(self) -> Any:
        """The remembered store, or a client of torchrun's own store when the script never made a group."""
        self.remember_store()
        if self._store is None and os.environ.get("TORCHELASTIC_USE_AGENT_STORE", "").lower() == "true":
            try:
                from torch.distributed import TCPStore

                self._store = TCPStore(os.environ["MASTER_ADDR"], int(os.environ["MASTER_PORT"]),
                                       is_master=False, timeout=timedelta(seconds=30))
            except Exception:  # no reachable store: each rank keeps its own report
                self._store = None
        return self._store

    def gather(self, rank: int, world_size: int, payload: dict[str, Any], *,
               brief: bool = False) -> list[dict[str, Any]] | None:
        """On rank 0: every rank's payload that arrived in time (rank 0's first). On the others: None,
        after rank 0 has read them or the wait ran out (then ``rank0_absent``: rank 0 may be stuck in a
        collective that this rank, having crashed, never joined). Without a store: ``[payload]``."""
        store = self._client()
        if store is None:
            return [payload]
        RankExchange.rounds += 1
        prefix = "nndoctor/{}/{}/{}".format(os.environ.get("TORCHELASTIC_RUN_ID", "run"),
                                           os.environ.get("TORCHELASTIC_RESTART_COUNT", "0"), RankExchange.rounds)
        wait = timedelta(seconds=min(timeout_s(), BRIEF_TIMEOUT_S) if brief else timeout_s())
        try:
            store.set(f"{prefix}/rank{rank}", json.dumps(payload, default=str))
            if rank != 0:
                try:  # leave together with rank 0 (a clean distributed exit)
                    store.wait([f"{prefix}/read"], wait)
                except Exception:
                    self.rank0_absent = True
                return None
            keys = [f"{prefix}/rank{r}" for r in range(world_size)]
            try:
                store.wait(keys, wait)
            except Exception:
                print(f"nndoctor: not every rank reported within {wait.total_seconds():.0f} s "
                      "(NNDOCTOR_RANK_TIMEOUT); merging those that did", file=sys.stderr)
            found = [json.loads(store.get(k)) for k in keys if store.check([k])]
            store.set(f"{prefix}/read", "1")
            return found
        except Exception as exc:  # the store went away (a rank died): keep what this rank knows
            print(f"nndoctor: could not exchange reports between ranks ({exc})", file=sys.stderr)
            return [payload] if rank == 0 else None
