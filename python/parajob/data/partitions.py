"""``partition_keys``: one mini-batch per combination of key values (docs/contract.md §2.4).

Three plans, chosen by what the keys are:

- Table, every key constant per file (columns from ``extract_columns_from_partition_format``
  or ``Path``), no take/skip: files are grouped by their key values and a mini-batch reads
  its files whole. Nothing is read to plan it (the oj many-models layout).
- Table, some key is a data column: the table is read once on every core, its rows
  grouped by the keys (stable: rows keep their order within a group) and gathered into
  one key-sorted Arrow table (partition_groups.py). Workers, forked afterwards, share it
  copy-on-write: a mini-batch is a row range of it, converted to pandas a chunk of
  neighbouring partitions at a time (partition_frames.py). Peak memory: the table plus
  about one column per planning thread while it is gathered, then the sorted table alone.
  No partition can start before the whole table is read: any row may belong to any
  group, and a mini-batch's id is its key's rank among all keys (stable across runs).
- File list (MLTable without read_*, or uri_folder): files grouped by key values taken
  from the path, by the MLTable's partition format or ``key=value`` folder names.

Mini-batches are in ascending key order (nulls last), so their ids are stable across runs.
``partition_key_value`` is a dict {key: value}: text from paths unless converted by
``convert_column_types``; the column's values for data columns.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
import pandas as pd
import pyarrow as pa

from parajob.data import transforms as tf
from parajob.data.fingerprints import (
    digest_of,
    empty_digests,
    file_digests,
    grouped_digests,
    stat_identities,
)
from parajob.data.input_errors import Where
from parajob.data.partition_frames import PartitionFrames
from parajob.data.partition_groups import gather, group_rows, read_pieces
from parajob.data.tables import DEFAULT_BYTES_PER_BATCH, TableBatchPlan, TableParts
from parajob.spec.report import did_you_mean

__all__ = [
    "ArrowPartitionPlan",
    "FilePartitionPlan",
    "plan_file_partitions",
    "plan_table_partitions",
]


def _sort_key(values: tuple[Any, ...]) -> tuple[Any, ...]:
    return tuple((v is None, v if v is not None else 0) for v in values)


def plan_table_partitions(
    parts: TableParts, keys: tuple[str, ...], where: Where
) -> TableBatchPlan | ArrowPartitionPlan:
    """TableBatchPlan grouped by file, or ArrowPartitionPlan; TableInputError for a key
    that is not a column (listing the columns there are) or holds lists or structs."""
    by_file = all(k in parts.constant for k in keys) and not parts.windows
    plan = parts.plan(0 if by_file else DEFAULT_BYTES_PER_BATCH)
    missing = [k for k in keys if k not in plan.schema.names]
    if missing:
        raise where.error(
            f"partition key '{missing[0]}' is not a column of the input (columns: "
            f"{', '.join(plan.schema.names)})",
            did_you_mean(missing[0], plan.schema.names)
            or "partition keys name columns of "
            "the table, for example the ones extract_columns_from_partition_format makes from "
            "the paths",
        )
    if by_file:
        return _group_files(parts, plan, keys)
    nested = [k for k in keys if pa.types.is_nested(plan.schema.field(k).type)]
    if nested:  # Arrow can neither sort nor hash them: say so before reading the table
        raise where.error(
            f"partition key '{nested[0]}' is a column of {plan.schema.field(nested[0]).type} "
            "values; a partition key must hold one value per row (a number, text, a date, "
            "a boolean)",
            "partition by a column of single values, for example one you make from this one "
            "in the data",
        )
    return ArrowPartitionPlan.build(plan, keys)


def _group_files(parts: TableParts, plan: TableBatchPlan, keys: tuple[str, ...]) -> TableBatchPlan:
    """One mini-batch per key combination, holding the whole files that have it."""
    pieces = plan.pieces
    values = {k: _converted(parts, k) for k in keys}
    groups: dict[tuple[Any, ...], list[int]] = defaultdict(list)
    for p, f in enumerate(pieces[:, 0].tolist()):
        groups[tuple(values[k][f] for k in keys)].append(p)
    order = sorted(groups, key=_sort_key)
    index = np.array([p for key in order for p in groups[key]], np.int64)
    sizes = [len(groups[key]) for key in order]
    offsets = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
    key_dicts = [dict(zip(keys, key, strict=True)) for key in order]
    return TableBatchPlan(
        parts.source,
        parts.finisher,
        pieces[index] if len(index) else pieces,
        offsets,
        None,
        plan.schema,
        key_dicts,
    )


def _converted(parts: TableParts, column: str) -> list[Any]:
    """Per-file values of a constant column after the MLTable's conversions of it."""
    values = pa.chunked_array([pa.array(parts.constant[column])])
    for step in parts.table.steps:
        if isinstance(step, tf.ConvertColumns):
            for conv in step.conversions:
                if column in conv.columns:
                    values = conv.apply(values, column)
    return list(values.to_pylist())


@dataclass
class ArrowPartitionPlan:
    """Partitions as row ranges of one key-sorted Arrow table, shared with the workers."""

    loads_data: ClassVar[bool] = True  # materialise() converts the rows to pandas

    table: pa.Table  # sorted by the keys, one chunk per column, in the driver's heap
    offsets: np.ndarray  # (n_batches + 1,) row offsets
    keys: list[dict[str, Any]]
    # Digest of every piece the table was read from (files' identities and ranges): any
    # row may have moved to any partition, so a change anywhere changes every partition.
    inputs_digest: bytes = b""
    frames: PartitionFrames = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.frames = PartitionFrames(self.table, self.offsets)

    @property
    def n_batches(self) -> int:
        return len(self.offsets) - 1

    @property
    def n_items(self) -> int:
        return int(self.table.num_rows)

    def items_in(self, batch: int) -> int:
        return int(self.offsets[batch + 1] - self.offsets[batch])

    def materialise(self, batch: int) -> pd.DataFrame:
        return self.frames.frame(batch)

    def partition_key_value(self, batch: int) -> dict[str, Any]:
        return dict(self.keys[batch])

    def describe(self, batch: int) -> str:
        return (
            f"mini-batch {batch} (partition {self.keys[batch]}, {self.items_in(batch)} rows: "
            f"rows {int(self.offsets[batch])}-{int(self.offsets[batch + 1]) - 1} of the "
            "table sorted by the partition keys)"
        )

    def fingerprints(self) -> np.ndarray:
        """(n_batches, 16): the partition's key values and row range, and the digest of
        every input piece (see inputs_digest)."""
        bounds = np.column_stack([np.arange(self.n_batches), np.arange(self.n_batches) + 1])
        extras = [
            repr((sorted(k.items()), int(self.offsets[b]), int(self.offsets[b + 1]))).encode()
            for b, k in enumerate(self.keys)
        ]
        return grouped_digests(
            empty_digests(self.n_batches), bounds, salt=self.inputs_digest, extras=extras
        )

    @classmethod
    def build(cls, plan: TableBatchPlan, keys: tuple[str, ...]) -> ArrowPartitionPlan:
        """Read every piece of plan, group the rows by keys, gather them in key order
        (all on every core, partition_groups.py); raises ValueError naming the file of
        the first bad piece."""
        table = read_pieces(plan.materialise_arrow, plan.n_batches, plan.schema)
        grouping = group_rows(table, keys)
        schema, columns = table.schema, list(table.columns)
        del table  # gather frees each column's unsorted chunks as it goes
        ordered = gather(columns, schema, grouping.order)
        inputs = digest_of(plan.schema.to_string().encode(), plan.piece_identities().tobytes())
        return cls(ordered, grouping.offsets, grouping.keys, inputs)


@dataclass
class FilePartitionPlan:
    """Files grouped by path-format keys: mini-batch b = paths[offsets[b]:offsets[b+1]]."""

    loads_data: ClassVar[bool] = False  # materialise() only names files

    paths: list[str]
    offsets: np.ndarray
    keys: list[dict[str, Any]]

    @property
    def n_batches(self) -> int:
        return len(self.offsets) - 1

    @property
    def n_items(self) -> int:
        return len(self.paths)

    def items_in(self, batch: int) -> int:
        return int(self.offsets[batch + 1] - self.offsets[batch])

    def materialise(self, batch: int) -> list[str]:
        return self.paths[int(self.offsets[batch]) : int(self.offsets[batch + 1])]

    def partition_key_value(self, batch: int) -> dict[str, Any]:
        return dict(self.keys[batch])

    def describe(self, batch: int, limit: int = 5) -> str:
        files = self.materialise(batch)
        shown = "\n".join(f"  {p}" for p in files[:limit])
        more = f"\n  ... and {len(files) - limit} more" if len(files) > limit else ""
        return (
            f"mini-batch {batch} (partition {self.keys[batch]}, {len(files)} files):\n{shown}{more}"
        )

    def fingerprints(self) -> np.ndarray:
        """(n_batches, 16): the partition's key values and its files' identities."""
        items = file_digests(self.paths, *stat_identities(self.paths))
        bounds = np.column_stack([self.offsets[:-1], self.offsets[1:]])
        return grouped_digests(
            items,
            bounds,
            salt=b"partition",
            extras=[repr(sorted(k.items())).encode() for k in self.keys],
        )


def plan_file_partitions(
    paths: list[str], values: dict[str, list[Any]], keys: tuple[str, ...]
) -> FilePartitionPlan:
    """Group paths by the values of keys (values[key][i] belongs to paths[i])."""
    groups: dict[tuple[Any, ...], list[str]] = defaultdict(list)
    for i, path in enumerate(paths):
        groups[tuple(values[k][i] for k in keys)].append(path)
    order = sorted(groups, key=_sort_key)
    flat = [p for key in order for p in groups[key]]
    offsets = np.concatenate([[0], np.cumsum([len(groups[k]) for k in order])]).astype(np.int64)
    return FilePartitionPlan(flat, offsets, [dict(zip(keys, key, strict=True)) for key in order])
