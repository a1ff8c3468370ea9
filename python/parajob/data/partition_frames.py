"""The DataFrame run() receives for a partition of a key-sorted table, cheaply (worker side).

    sorted table (Arrow, inherited through fork)
        | rows of a chunk: neighbouring partitions, ~CHUNK_ROWS rows in all
        v
    to_pandas once per chunk (dtypes.py) --cached: the worker's last chunk-->
        frame.iloc[partition rows].reset_index(drop=True)  -> run()

Why: converting each partition on its own cost 0.37 ms per group (issue 13's profile of
3,000 groups of ~670 rows): pandas builds its blocks, index and string arrays per call
whatever the size. A chunk converts in one call, and a partition is then a row slice.
Workers claim mini-batches in ascending order from one queue, so a worker's consecutive
claims fall in the same chunk; each worker converts each chunk about once.

Invariants: the frame is the one ``dtypes.to_pandas`` gives for the partition's rows
alone: same columns, dtypes, values and a fresh RangeIndex. That holds for a slice of the
chunk's frame only where a column's pandas dtype cannot depend on which rows are
converted: so a chunk holding a missing value in an integer or boolean column (float64 /
object for the chunk, maybe int64 / bool for the partition), or a column of any type
outside SLICEABLE_TYPES, is converted per partition as before. The frame owns its data
or shares it copy-on-write (``reset_index`` copies under pandas < 3, and pandas 3 is
copy-on-write), so a run() that writes into it cannot change the cached chunk that a
retry or a neighbouring partition reads.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd
import pyarrow as pa

from parajob.data.dtypes import to_pandas

__all__ = ["CHUNK_ROWS", "PartitionFrames", "sliceable"]

CHUNK_ROWS = 65536  # rows converted per call: ~100 partitions of the issue-13 table


def _timestamp_ns(kind: pa.DataType) -> bool:
    # Other units: pandas < 2 converts them to ns and may reject an out-of-range value
    # that lies in another partition of the chunk.
    return bool(pa.types.is_timestamp(kind) and kind.unit == "ns")


_NULL_SAFE: tuple[Callable[[pa.DataType], bool], ...] = (
    pa.types.is_floating,
    pa.types.is_string,
    pa.types.is_large_string,
    pa.types.is_date,
    _timestamp_ns,
)
_NULL_FREE: tuple[Callable[[pa.DataType], bool], ...] = (pa.types.is_integer, pa.types.is_boolean)
SLICEABLE_TYPES = "integer, boolean, floating, string, date, timestamp[ns]"


def sliceable(chunk: pa.Table) -> bool:
    """Whether every partition of chunk converts as a row slice of chunk's frame."""
    for fld, column in zip(chunk.schema, chunk.columns, strict=True):
        if any(test(fld.type) for test in _NULL_SAFE):
            continue
        if any(test(fld.type) for test in _NULL_FREE) and column.null_count == 0:
            continue
        return False
    return True


class PartitionFrames:
    """Partition b of ``table`` is rows ``offsets[b]:offsets[b + 1]``; :meth:`frame` gives
    its DataFrame. Built in the driver, used in each worker (one cached chunk each)."""

    def __init__(self, table: pa.Table, offsets: np.ndarray) -> None:
        self.table = table
        self.offsets = offsets
        starts = offsets[:-1]
        # Chunk c: the partitions starting in rows [c * CHUNK_ROWS, (c + 1) * CHUNK_ROWS);
        # it ends where its last partition does (a large partition is a chunk alone).
        self.chunk_of = starts // CHUNK_ROWS
        first = np.flatnonzero(np.diff(self.chunk_of, prepend=-1)) if len(starts) else starts
        self.chunk_first = np.append(first, len(starts)).astype(np.int64)
        self.chunk_index = np.cumsum(np.diff(self.chunk_of, prepend=-1) != 0) - 1
        self._cached = -1
        self._cached_start = 0
        self._cached_frame: pd.DataFrame | None = None

    def frame(self, batch: int) -> pd.DataFrame:
        """The DataFrame of partition batch (see the module docstring)."""
        lo, hi = int(self.offsets[batch]), int(self.offsets[batch + 1])
        c = int(self.chunk_index[batch])
        first, end = int(self.chunk_first[c]), int(self.chunk_first[c + 1])
        if end - first == 1:  # alone in its chunk: nothing to share
            return to_pandas(self.table.slice(lo, hi - lo))
        if c != self._cached:
            start, stop = int(self.offsets[first]), int(self.offsets[end])
            chunk = self.table.slice(start, stop - start)
            self._cached_frame = None  # the old chunk goes before the new one is built
            self._cached, self._cached_start = c, start
            self._cached_frame = to_pandas(chunk) if sliceable(chunk) else None
        if self._cached_frame is None:
            return to_pandas(self.table.slice(lo, hi - lo))
        at = lo - self._cached_start
        return self._cached_frame.iloc[at : at + hi - lo].reset_index(drop=True)
