"""Tabular inputs (an MLTable with a read_* transformation) -> mini-batches of rows.

    MLTable --mltable_paths--> files --source.plan (C++ scan / Parquet footers)--> pieces
        pieces: (n, 5) uint64 [file, begin, end, records, first_line], whole records
        |
        +-- row windows: take / skip become a row range per piece (records are exact)
        +-- partition_keys: pieces regrouped per key combination (partitions.py)
        v
    TableBatchPlan: mini-batch b = pieces[offsets[b]:offsets[b + 1]]
        worker: read each piece (one pread + Arrow parse) -> Finisher -> concat -> pandas

Invariants: planning reads headers, a 200-row sample and footers, never the data; the
plan is plain numpy + small Python objects, built before fork and inherited by workers;
every mini-batch has the Arrow schema :attr:`TableBatchPlan.schema` and a fresh
RangeIndex (its pandas dtypes: dtypes.py);
mini-batch b is the same rows on every run of the same input (ids stable for resume).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

import numpy as np
import pandas as pd
import pyarrow as pa

from parajob.data import transforms as tf
from parajob.data.delimited import DelimitedSource
from parajob.data.dtypes import to_pandas
from parajob.data.fingerprints import (
    digest_of,
    empty_digests,
    file_digests,
    grouped_digests,
    stat_identities,
)
from parajob.data.input_errors import TableInputError, Where
from parajob.data.jsonlines import JsonLinesSource
from parajob.data.mltable import MLTable
from parajob.data.mltable_paths import DataFile, resolve_files
from parajob.data.parquet import ParquetSource

if TYPE_CHECKING:  # partitions.py imports this module: imported where used
    from parajob.data.partitions import ArrowPartitionPlan

__all__ = [
    "DEFAULT_BYTES_PER_BATCH",
    "Source",
    "TableBatchPlan",
    "plan_table_batches",
    "table_parts",
]

DEFAULT_BYTES_PER_BATCH = 1024 * 1024  # spec.sizes.DEFAULT_BYTES_PER_BATCH


class Source(Protocol):
    """A format's reader: plans pieces of its files and reads one piece as Arrow."""

    files: list[DataFile]
    schema: pa.Schema

    @property
    def exact_records(self) -> bool: ...

    def plan(self, target_bytes: int) -> np.ndarray: ...
    def read(self, f: int, begin: int, end: int, first_line: int) -> pa.Table: ...
    def describe(self, f: int, begin: int, end: int, records: int, first_line: int) -> str: ...


@dataclass
class TableBatchPlan:
    """Mini-batches of rows; see the module docstring. Read-only after construction."""

    loads_data: ClassVar[bool] = True  # materialise() reads and converts the rows

    source: Source
    finisher: tf.Finisher
    pieces: np.ndarray  # (n_pieces, 5) uint64
    offsets: np.ndarray  # (n_batches + 1,) int64
    rows: np.ndarray | None  # (n_pieces, 2) int64 row range inside each piece, or None
    schema: pa.Schema
    keys: list[dict[str, Any]] | None = None

    @property
    def n_batches(self) -> int:
        return len(self.offsets) - 1

    @property
    def n_items(self) -> int:
        """Rows in all mini-batches (exact for CSV, JSON lines with invalid_lines: error,
        Parquet; utf16/utf32 files count 0 until read)."""
        if self.rows is not None:
            return int((self.rows[:, 1] - self.rows[:, 0]).sum())
        return int(self.pieces[:, 3].sum())

    def items_in(self, batch: int) -> int:
        lo, hi = int(self.offsets[batch]), int(self.offsets[batch + 1])
        if self.rows is not None:
            return int((self.rows[lo:hi, 1] - self.rows[lo:hi, 0]).sum())
        return int(self.pieces[lo:hi, 3].sum())

    def materialise(self, batch: int) -> pd.DataFrame:
        return to_pandas(self.materialise_arrow(batch))

    def materialise_arrow(self, batch: int) -> pa.Table:
        """The mini-batch as Arrow (raises ValueError naming the file on bad data)."""
        parts = []
        for p in range(int(self.offsets[batch]), int(self.offsets[batch + 1])):
            f, begin, end, _records, line = (int(v) for v in self.pieces[p])
            table = self.source.read(f, begin, end, line)
            if self.rows is not None:
                table = table.slice(int(self.rows[p, 0]), int(self.rows[p, 1] - self.rows[p, 0]))
            parts.append(self.finisher.apply(table, f, self.source.files[f].path))
        if not parts:
            return self.schema.empty_table()
        table = parts[0] if len(parts) == 1 else pa.concat_tables(parts)
        return table if table.schema.equals(self.schema) else table.cast(self.schema)

    def partition_key_value(self, batch: int) -> dict[str, Any] | None:
        return dict(self.keys[batch]) if self.keys is not None else None

    def describe(self, batch: int, limit: int = 5) -> str:
        lo, hi = int(self.offsets[batch]), int(self.offsets[batch + 1])
        head = f"mini-batch {batch} ({self.items_in(batch)} rows"
        head += f", partition {self.keys[batch]})" if self.keys is not None else ")"
        lines = [
            self.source.describe(*(int(v) for v in self.pieces[p]))
            for p in range(lo, min(hi, lo + limit))
        ]
        more = [f"... and {hi - lo - limit} more files"] if hi - lo > limit else []
        return "\n  ".join([head + ":", *lines, *more])

    def row_place(self, batch: int, index: int) -> str:
        """Where row ``index`` of a mini-batch is read from: its piece (file, bytes, first
        line) and the row's number among that piece's rows ("" when not known)."""
        for p in range(int(self.offsets[batch]), int(self.offsets[batch + 1])):
            first = int(self.rows[p, 0]) if self.rows is not None else 0
            count = (
                int(self.rows[p, 1]) - first if self.rows is not None else int(self.pieces[p, 3])
            )
            if index < count:
                where = self.source.describe(*(int(v) for v in self.pieces[p]))
                return f"{where}; its row {first + index}"
            index -= count
        return ""

    def fingerprints(self) -> np.ndarray:
        """(n_batches, 16) digests of what each batch reads: per piece its file's identity
        (path, size, mtime), byte range, record count, first line and row window; the
        partition's key values; the final schema (a changed transformation changes it)."""
        if not len(self.pieces):  # a table without rows: nothing to fingerprint
            return empty_digests(self.n_batches)
        return grouped_digests(
            self.piece_identities(),
            self.bounds(),
            salt=digest_of(self.schema.to_string().encode()),
            extras=None
            if self.keys is None
            else [repr(sorted(k.items())).encode() for k in self.keys],
        )

    def piece_identities(self) -> np.ndarray:
        """(n_pieces, 16 + 56) uint8: file identity digest, then the piece's numbers."""
        paths = [f.path for f in self.source.files]
        files = file_digests(paths, *stat_identities(paths))
        rows = self.rows if self.rows is not None else np.zeros((len(self.pieces), 2), np.int64)
        numbers = np.hstack(
            [
                self.pieces.astype(np.uint64).view(np.uint8).reshape(len(self.pieces), -1),
                np.ascontiguousarray(rows, dtype=np.int64)
                .view(np.uint8)
                .reshape(len(self.pieces), -1),
            ]
        )
        return np.hstack([files[self.pieces[:, 0].astype(np.int64)], numbers])

    def bounds(self) -> np.ndarray:
        """(n_batches, 2) [first, end) piece of each batch."""
        return np.column_stack([self.offsets[:-1], self.offsets[1:]])


def plan_table_batches(
    table: MLTable,
    target_bytes: int | None,
    partition_keys: tuple[str, ...] | None = None,
    keys_where: Where | None = None,
) -> TableBatchPlan | ArrowPartitionPlan:
    """Plan the mini-batches of a tabular MLTable; TableInputError for bad input.

    With partition_keys: one mini-batch per key combination (partitions.py).
    """
    parts = table_parts(table)
    if partition_keys:
        from parajob.data.partitions import plan_table_partitions

        return plan_table_partitions(parts, partition_keys, keys_where or Where(str(table.file)))
    return parts.plan(target_bytes or DEFAULT_BYTES_PER_BATCH)


@dataclass
class TableParts:
    """An MLTable resolved to files, a source and a finisher, not yet cut."""

    table: MLTable
    source: Source
    finisher: tf.Finisher
    constant: dict[str, list[Any]]  # per-file constant columns (Path, partition format)

    @property
    def windows(self) -> list[tf.RowWindow]:
        return [s for s in self.table.steps if isinstance(s, tf.RowWindow)]

    def plan(self, target_bytes: int) -> TableBatchPlan:
        """One mini-batch per piece of at most ~target_bytes (0: per file)."""
        pieces = self.source.plan(target_bytes)
        schema = self.finisher.final_schema(self.source.schema)
        pieces, rows = self._windows(pieces)
        offsets = np.arange(len(pieces) + 1, dtype=np.int64)
        return TableBatchPlan(self.source, self.finisher, pieces, offsets, rows, schema)

    def _windows(self, pieces: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        if not self.windows:
            return pieces, None
        if not self.source.exact_records:
            step = self.windows[0]
            raise step.where.error(
                f"{step.name} needs exact row counts, which this input "
                "cannot give before reading it (invalid_lines: drop, or "
                "a utf16/utf32 file)"
            )
        lo, hi = 0, None
        for w in self.windows:  # in the MLTable's order: skip 5, take 10 != take 10, skip 5
            if w.name == "skip":
                lo = lo + w.count if hi is None else min(lo + w.count, hi)
            else:
                hi = lo + w.count if hi is None else min(hi, lo + w.count)
        counts = pieces[:, 3].astype(np.int64)
        starts = np.concatenate([[0], np.cumsum(counts)[:-1]]) if len(counts) else counts
        first = np.clip(lo - starts, 0, counts)
        last = counts if hi is None else np.clip(hi - starts, 0, counts)
        keep = last > first
        rows = np.column_stack([first, last])[keep]
        return pieces[keep], rows


def table_parts(table: MLTable) -> TableParts:
    """Resolve files and the per-file columns, and check the transformations' columns."""
    assert table.reader is not None
    files = resolve_files(table)
    options, where = table.reader.options, table.reader.where
    steps = table.steps
    partition_values: dict[int, list[tuple[Any, ...] | None]] = {}
    constant: dict[str, list[Any]] = {}
    if options.get("include_path_column"):
        constant[tf.PATH_COLUMN] = [f.path for f in files]
    problems = []
    for k, step in enumerate(steps):
        if isinstance(step, tf.PartitionColumns):
            values = [step.format.extract(f.relpath) for f in files]
            bad = [f for f, v in zip(files, values, strict=True) if v is None]
            if bad and not step.ignore_error:
                problems.append(
                    step.where.diagnostic(
                        f"{len(bad)} of {len(files)} files do not match partition format "
                        f"'{step.format.text}', e.g. '{bad[0].relpath}'",
                        "the format is matched against paths relative to the MLTable folder; "
                        "set ignore_error: true to give such files null values",
                    )
                )
            partition_values[k] = values
            for j, name in enumerate(step.format.names):
                constant[name] = [v[j] if v is not None else None for v in values]
    if problems:
        raise TableInputError(problems)
    strings = frozenset(
        name
        for s in steps
        if isinstance(s, tf.ConvertColumns)
        for c in s.conversions
        for name in c.columns
    )
    kind = table.reader.kind
    source: Source
    if kind == "delimited":
        source = DelimitedSource(files, options, where, strings)
    elif kind == "json_lines":
        source = JsonLinesSource(files, options, where, strings)
    else:
        source = ParquetSource(files, options, where, strings)
    finisher = tf.Finisher(steps, bool(options.get("include_path_column")), partition_values)
    return TableParts(table, source, finisher, constant)
