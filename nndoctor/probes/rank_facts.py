"""What one rank of a distributed run saw, summarised for the merge on rank 0. Measures only.

Recorded while training, and only when the run has more than one rank (nothing is hashed or summed
in an ordinary run):
- which data loader fed the optimizer steps, its sampler, the epochs its sampler was at when each pass
  over the data began, and hashes of its first batches (DDP002, DDP003);
- a fingerprint of the loader's dataset, read at fixed indices under a fixed seed (DDP003);
- the main model's per-rank batch sizes and its batch-norm layers that are not synchronised (DDP004);
- per-parameter checksums of the main model after optimizer steps 1, 2, 4, 8, ... and at the end,
  so that ranks can be compared at the same step however long the run is (DDP001).

The data loader is seen by wrapping ``_BaseDataLoaderIter.__next__`` (PyTorch has no data loader hook)
for the probe's lifetime; the wrapper records and returns the batch unchanged.
"""
from __future__ import annotations

import functools
import hashlib
import os
import weakref
from typing import Any, Callable

import numpy as np
import torch
from torch import nn
from torch.utils.data import dataloader as dataloader_module

from nndoctor.probes.wrappers import named_modules, named_parameters
from nndoctor.sandbox import preserved_rng, seed_all

FIRST_BATCHES = 8  # batches hashed per data loader, and per-rank batch sizes kept
FINGERPRINT_ITEMS = 3  # dataset items read for the dataset fingerprint
HASHED_BYTES = 1 << 20  # per tensor: a batch of images is hashed by its first MiB


def world() -> tuple[int, int]:
    """(rank, world size): from the process group when there is one, else from torchrun's environment."""
    try:
        import torch.distributed as dist

        if dist.is_available() and dist.is_initialized():
            return dist.get_rank(), dist.get_world_size()
    except (ImportError, RuntimeError, ValueError):
        pass
    return _env_int("RANK", 0), _env_int("WORLD_SIZE", 1)


def _env_int(name: str, default: int) -> int:
    try:
        return int(os.environ.get(name, default))
    except ValueError:
        return default


def digest(value: Any) -> str:
    """A short hash of a batch or a dataset item: tensors and arrays by their bytes, containers by their
    parts, anything else by its ``repr`` (an object whose repr holds an address never matches: no alarm)."""
    h = hashlib.blake2b(digest_size=8)
    _feed(h, value)
    return h.hexdigest()


def _feed(h: Any, value: Any) -> None:
    if isinstance(value, torch.Tensor):
        t = value.detach()
        h.update(f"T{tuple(t.shape)}{t.dtype}".encode())
        if t.layout == torch.strided and t.numel():  # the leading rows: enough to tell batches apart, cheaply
            flat = t.reshape(-1)[: max(1, HASHED_BYTES // t.element_size())]
            h.update(flat.cpu().contiguous().view(torch.uint8).numpy().tobytes())
    elif isinstance(value, np.ndarray):
        h.update(f"A{value.shape}{value.dtype}".encode())
        h.update(np.ascontiguousarray(value.reshape(-1)[: max(1, HASHED_BYTES // max(1, value.itemsize))]).tobytes())
    elif isinstance(value, dict):
        for key in sorted(value, key=repr):
            h.update(repr(key).encode())
            _feed(h, value[key])
    elif isinstance(value, (list, tuple)):
        h.update(f"L{len(value)}".encode())
        for item in value:
            _feed(h, item)
    else:
        h.update(repr(value).encode())


def batch_size_of(inputs: Any) -> int | None:
    """The leading dimension of the first tensor argument, looking inside lists, tuples and dicts (a
    framework may call the model with the whole batch): the batch, for batch-first models."""
    for value in inputs.values() if isinstance(inputs, dict) else inputs:
        if isinstance(value, torch.Tensor) and value.dim() > 0:
            return int(value.shape[0])
        if isinstance(value, (list, tuple, dict)):
            found = batch_size_of(value)
            if found is not None:
                return found
    return None


def sharding_sampler(sampler: Any) -> bool:
    """A sampler that gives each rank its own share (DistributedSampler, or one that knows its replicas)."""
    from torch.utils.data.distributed import DistributedSampler

    return isinstance(sampler, DistributedSampler) or any(
        hasattr(sampler, name) for name in ("num_replicas", "num_processes", "world_size"))


class _Source:
    """One data loader (identified by its dataset and index sampler) as seen by the probe."""

    def __init__(self, dataset: Any, index_sampler: Any):
        self.dataset_ref = _ref(dataset)
        self.index_sampler_ref = _ref(index_sampler)
        inner = getattr(index_sampler, "sampler", None)
        self.sampler = inner if inner is not None else index_sampler
        shards = sharding_sampler(index_sampler) or sharding_sampler(self.sampler)
        self.facts: dict[str, Any] = {
            "sampler": type(self.sampler).__name__,
            "sharded": shards,
            "shuffle": bool(getattr(self.sampler, "shuffle", False)) if shards else None,
            "has_set_epoch": callable(getattr(self.sampler, "set_epoch", None)),
            "dataset": type(dataset).__name__,
            "dataset_id": id(dataset),  # loaders rebuilt every epoch over one dataset are judged together
            "map_style": hasattr(dataset, "__getitem__") and not isinstance(dataset, torch.utils.data.IterableDataset),
            "dataset_len": _len(dataset),
            "sampler_len": _len(self.sampler),
            # per pass over the data: [the sampler's shuffling seed (seed + epoch) when it began, optimizer steps]
            "passes": [],
            "batch_hashes": [],
            "steps": 0,  # optimizer steps taken right after a batch from this loader
            "dataset_digest": None,
        }

    def matches(self, dataset: Any, index_sampler: Any) -> bool:
        return self.dataset_ref() is dataset and self.index_sampler_ref() is index_sampler


def _ref(obj: Any) -> Any:
    try:
        return weakref.ref(obj)
    except TypeError:  # a list used as a dataset, a generator as a sampler: keep it alive with the record
        return lambda: obj


def _len(obj: Any) -> int | None:
    try:
        return len(obj)
    except Exception:
        return None


class RankFacts:
    """Per-rank measurements for the distributed checks. A context manager: the data loader wrapper is
    installed on entry and removed on exit."""

    def __init__(self, before_group_destroyed: Callable[[], None] | None = None) -> None:
        self._before_group_destroyed = before_group_destroyed
        self._restore: list[Callable[[], None]] = []
        self._env_world = _env_int("WORLD_SIZE", 1)  # torchrun's; a group made later is asked directly
        self.sources: dict[int, _Source] = {}
        self._last_source: _Source | None = None
        self.batch_sizes: list[int] = []
        self.input_hashes: list[str] = []  # the main model's inputs, for loops without a DataLoader
        self.unsynced_bn: list[str] = []
        self.checksums: dict[int, dict[str, list[float]]] = {}
        self._main: Any = None  # weakref to the main model (the trained root with most parameters)
        self._main_size = -1

    # ----- install / remove ------------------------------------------------------------------------------
    def __enter__(self) -> "RankFacts":
        base = dataloader_module._BaseDataLoaderIter
        original = base.__next__
        facts = self

        def __next__(iterator: Any) -> Any:
            starting = getattr(iterator, "_num_yielded", None) == 0
            batch = original(iterator)
            try:
                facts.on_batch(iterator, batch, starting)
            except Exception:  # an unusual iterator: no record, never a broken loop
                pass
            return batch

        base.__next__ = __next__  # type: ignore[method-assign]
        self._restore.append(lambda: setattr(base, "__next__", original))
        if self._before_group_destroyed is not None:
            self._wrap_destroy(self._before_group_destroyed)
        return self

    def _wrap_destroy(self, callback: Callable[[], None]) -> None:
        """Scripts often destroy their process group (and let the model go) before they return: measure first."""
        if not torch.distributed.is_available():
            return
        import torch.distributed as dist
        from torch.distributed import distributed_c10d as c10d

        original = c10d.destroy_process_group

        @functools.wraps(original)
        def destroy_process_group(*args: Any, **kwargs: Any) -> Any:
            if not args and kwargs.get("group") is None:  # the default group, not a subgroup
                callback()
            return original(*args, **kwargs)

        dist.destroy_process_group = c10d.destroy_process_group = destroy_process_group

        def restore() -> None:
            dist.destroy_process_group = c10d.destroy_process_group = original

        self._restore.append(restore)

    def __exit__(self, *exc: Any) -> None:
        while self._restore:
            self._restore.pop()()

    def distributed(self) -> bool:
        """More than one rank (asked on the hot path: the environment is read once)."""
        if self._env_world > 1:
            return True
        import torch.distributed as dist

        return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1

    # ----- events ---------------------------------------------------------------------------------------
    def on_batch(self, iterator: Any, batch: Any, starting: bool) -> None:
        if not self.distributed():  # an ordinary run pays nothing per batch
            return
        dataset, index_sampler = iterator._dataset, iterator._index_sampler
        source = self.sources.get(id(index_sampler))
        if source is None or not source.matches(dataset, index_sampler):
            source = self.sources[id(index_sampler)] = _Source(dataset, index_sampler)
        self._last_source = source
        facts = source.facts
        if starting:
            epoch, seed = getattr(source.sampler, "epoch", None), getattr(source.sampler, "seed", 0)
            shuffle_seed = epoch + seed if isinstance(epoch, int) and isinstance(seed, int) else None
            facts["passes"].append([shuffle_seed, 0])
        if len(facts["batch_hashes"]) < FIRST_BATCHES:
            facts["batch_hashes"].append(digest(batch))

    def on_training_forward(self, root: nn.Module, inputs: tuple) -> None:
        if not self.distributed():
            return
        main = self._main() if self._main is not None else None
        if main is not root:
            size = sum(p.numel() for p in root.parameters())
            if main is None or size > self._main_size:
                self._main, self._main_size = weakref.ref(root), size
                main = root
                self.unsynced_bn = [name for name, m in named_modules(root)
                                    if isinstance(m, nn.modules.batchnorm._BatchNorm)
                                    and not isinstance(m, nn.SyncBatchNorm) and m.training]
        if main is root and len(self.batch_sizes) < FIRST_BATCHES:
            n = batch_size_of(inputs)
            if n is not None:
                self.batch_sizes.append(n)
            if self._last_source is None:
                self.input_hashes.append(digest(inputs))

    def on_step(self) -> None:
        """An optimizer is about to step."""
        source = self._last_source
        if source is not None and self.distributed():
            source.facts["steps"] += 1
            if source.facts["passes"]:
                source.facts["passes"][-1][1] += 1
            if source.facts["dataset_digest"] is None and not source.facts["sharded"] and source.facts["map_style"]:
                source.facts["dataset_digest"] = self._dataset_digest(source)

    def after_step(self, steps: int) -> bool:
        """Checksums after steps 1, 2, 4, 8, ... of a distributed run; True when it took them."""
        if steps & (steps - 1) == 0 and self.distributed():
            self.take_checksums(steps)
            return True
        return False

    # ----- measurements ---------------------------------------------------------------------------------
    def take_checksums(self, steps: int) -> None:
        """Per-parameter (sum, sum of squares) of the main model in float64, read with one host transfer."""
        model = self._main() if self._main is not None else None
        if model is None:
            return
        named = [(name, p.detach()) for name, p in named_parameters(model)]
        if not named or "FullyShard" in type(model).__name__ or any(type(p).__name__ == "DTensor" for _, p in named):
            return  # sharded parameters (FSDP, tensor parallel) legitimately differ across ranks
        with torch.no_grad():
            sums = torch.stack([torch.stack([p.double().sum(), p.double().square().sum()]) for _, p in named])
        values = sums.cpu().tolist()
        self.checksums[steps] = {name: v for (name, _), v in zip(named, values)}

    @staticmethod
    def _dataset_digest(source: _Source) -> str | None:
        """Items at fixed indices, read under a fixed seed so random augmentation reads the same on every
        rank; the user's RNG state is restored."""
        dataset, n = source.dataset_ref(), source.facts["dataset_len"]
        if dataset is None or not n:
            return None
        indices = sorted({0, n // 2, n - 1})[:FINGERPRINT_ITEMS]
        try:
            with preserved_rng():
                seed_all(0)
                return digest([n] + [dataset[i] for i in indices])
        except Exception:  # a dataset that cannot be indexed this way: no fingerprint, no verdict
            return None

    def summary(self) -> dict[str, Any]:
        """Everything the distributed checks need from this rank, as plain JSON-able data."""
        rank, size = world()
        training = [s.facts for s in self.sources.values() if s.facts["steps"]]
        return {
            "rank": rank,
            "world_size": size,
            "training_loaders": sorted(training, key=lambda f: -f["steps"]),
            "batch_sizes": list(self.batch_sizes),
            "input_hashes": list(self.input_hashes),
            "unsynced_bn": list(self.unsynced_bn),
            "checksums": {str(k): v for k, v in self.checksums.items()},
        }

