"""What every mini-batch plan offers the runtime (files, tables, partitions alike)."""

from __future__ import annotations

from typing import Any, Protocol

import numpy as np


class BatchPlan(Protocol):
    """A plan of mini-batches, built in the driver before fork and read by the workers.

    ``loads_data``: whether materialise() reads data (tables: under
    --task_overhead_timeout) or only names it (file lists: the run() timeout starts at the
    claim). ``fingerprints()``: what --resume compares to find mini-batches whose input
    changed since the run started.
    """

    @property
    def loads_data(self) -> bool: ...
    @property
    def n_batches(self) -> int: ...
    @property
    def n_items(self) -> int: ...
    def materialise(self, batch: int) -> Any: ...
    def items_in(self, batch: int) -> int: ...
    def partition_key_value(self, batch: int) -> dict[str, Any] | None: ...
    def describe(self, batch: int) -> str: ...
    def fingerprints(self) -> np.ndarray:
        """(n_batches, 16) uint8: a digest of what each mini-batch reads (its files' path,
        size and mtime; byte / row ranges; partition keys), equal on every run of an
        unchanged input (data/fingerprints.py). Called in the driver only, once per run."""
        ...
