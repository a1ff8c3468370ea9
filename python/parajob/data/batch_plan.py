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


class WrappedPlan:
    """A plan over another, answering as it does; subclasses change what they add
    (runtime/isolation.py's sub-batches, runtime/skip_items.py's left-out items)."""

    def __init__(self, plan: BatchPlan) -> None:
        self.plan = plan

    @property
    def loads_data(self) -> bool:
        return self.plan.loads_data

    @property
    def n_batches(self) -> int:
        return self.plan.n_batches

    @property
    def n_items(self) -> int:
        return self.plan.n_items

    def materialise(self, batch: int) -> Any:
        return self.plan.materialise(batch)

    def items_in(self, batch: int) -> int:
        return self.plan.items_in(batch)

    def partition_key_value(self, batch: int) -> dict[str, Any] | None:
        return self.plan.partition_key_value(batch)

    def describe(self, batch: int) -> str:
        return self.plan.describe(batch)

    def fingerprints(self) -> np.ndarray:
        return self.plan.fingerprints()
