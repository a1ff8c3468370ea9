"""In-memory items (parajob.map_batches over a list) -> mini-batches of consecutive items.

    caller's Sequence (list, tuple, range, ...)  -- held by reference, never copied or
        |                                           pickled: workers inherit it by fork()
        v
    ItemBatchPlan: batch b = items[b * size : (b + 1) * size]   (the last may be shorter)

Invariants: the plan is built in the driver before the workers are forked, and the caller
must not change the sequence while the run goes (each worker sees the copy-on-write
snapshot it was forked with; a replacement forked later would see the change). Resume is
not offered for in-memory items: ``fingerprints()`` names positions, not contents.
"""

from __future__ import annotations

import reprlib
from collections.abc import Sequence
from typing import Any, ClassVar

import numpy as np

from parajob.data.fingerprints import DIGEST_BYTES

_SHOWN = reprlib.Repr()
_SHOWN.maxstring, _SHOWN.maxother, _SHOWN.maxlist = 60, 60, 4


class ItemBatchPlan:
    """Mini-batches of ``size`` consecutive items of a sequence (a BatchPlan)."""

    loads_data: ClassVar[bool] = False  # slicing a list: nothing to time out apart from run()

    def __init__(self, items: Sequence[Any], size: int) -> None:
        if size < 1:
            raise ValueError(f"mini-batch size must be at least 1, not {size}")
        self.items = items
        self.size = size

    @property
    def n_batches(self) -> int:
        return -(-len(self.items) // self.size)

    @property
    def n_items(self) -> int:
        return len(self.items)

    def bounds(self, batch: int) -> tuple[int, int]:
        """[start, stop) item indices of a mini-batch."""
        start = batch * self.size
        return start, min(start + self.size, len(self.items))

    def items_in(self, batch: int) -> int:
        start, stop = self.bounds(batch)
        return stop - start

    def materialise(self, batch: int) -> list[Any]:
        start, stop = self.bounds(batch)
        return list(self.items[start:stop])

    def partition_key_value(self, batch: int) -> dict[str, Any] | None:
        return None

    def describe(self, batch: int, limit: int = 5) -> str:
        start, stop = self.bounds(batch)
        shown = "\n".join(
            f"  [{i}] {_SHOWN.repr(self.items[i])}" for i in range(start, min(stop, start + limit))
        )
        more = f"\n  ... and {stop - start - limit} more" if stop - start > limit else ""
        return f"mini-batch {batch} (items {start}..{stop - 1}):\n{shown}{more}"

    def fingerprints(self) -> np.ndarray:
        """Digests of each mini-batch's position (not its contents: see the module doc)."""
        out = np.zeros((self.n_batches, DIGEST_BYTES), dtype=np.uint8)
        # The batch index and the size, little-endian: vectorised (a million mini-batches).
        out[:, :8] = np.arange(self.n_batches, dtype="<u8").view(np.uint8).reshape(-1, 8)
        out[:, 8:] = np.frombuffer(np.uint64(self.size).astype("<u8").tobytes(), np.uint8)
        return out
