"""Sharded tensors (FSDP2's ``fully_shard``, tensor parallel: ``DTensor``) read locally, never collectively.

An operation on a DTensor that reduces it (a norm, a sum, ``any()``) makes PyTorch communicate between
ranks, or fails outright (a gradient in ``Partial`` placement cannot be redistributed for a norm). A watcher
must never start a collective: one rank that skips it hangs the others. So watchers measure each rank's
own shard (``to_local()``, a view, no copy and no communication) and ranks are compared, or combined, in
the report merge on rank 0 (``live/ranks.py``).
"""
from __future__ import annotations

from typing import Any

try:  # torch.distributed may be absent from a build
    from torch.distributed.tensor import DTensor
except Exception:  # pragma: no cover - builds without distributed support
    DTensor = None  # type: ignore[assignment,misc]


def is_sharded(t: Any) -> bool:
    return DTensor is not None and isinstance(t, DTensor)


def local(t: Any) -> Any:
    """This rank's shard of a DTensor (a view); any other tensor, or None, unchanged."""
    return t.to_local() if DTensor is not None and isinstance(t, DTensor) else t


def local_all(tensors: list[Any]) -> list[Any]:
    return [local(t) for t in tensors]
