"""``read_parquet`` tables: mini-batches of whole row groups, never spanning two files.

A row group is the smallest unit Parquet can read alone, so a file with one row group is
one mini-batch whatever its size (as on Azure). Consecutive row groups of a file are
gathered until their compressed size reaches ``mini_batch_size``. Planning reads only
the footers. Every file must have the first file's columns (types may differ only where
Arrow can cast them); pandas index columns (``__index_level_N__``) are left out. A
worker keeps the file it read last open (its footer parsed once, not per mini-batch).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from parajob.data.input_errors import TableInputError, Where
from parajob.data.mltable_paths import DataFile

__all__ = ["ParquetSource"]


@dataclass
class ParquetSource:
    files: list[DataFile]
    options: dict[str, Any]
    where: Where
    string_columns: frozenset[str] = frozenset()
    exact_records: bool = True
    schema: pa.Schema = field(default_factory=lambda: pa.schema([]))
    # The file a worker read last, kept open: opening a ParquetFile parses its footer
    # again, ~20% of reading one 1 MB mini-batch of a 100-row-group file (issue 13). One
    # file only, so a table of many files holds one descriptor per worker.
    _open: tuple[int, pq.ParquetFile] | None = field(default=None, repr=False, compare=False)

    def plan(self, target_bytes: int) -> np.ndarray:
        """(n, 5) uint64 pieces [file, first row group, end row group, rows, first row + 1]."""
        rows: list[tuple[int, int, int, int, int]] = []
        problems = []
        for i, f in enumerate(self.files):
            try:
                meta = pq.read_metadata(f.path)
            except (OSError, pa.ArrowException) as exc:
                problems.append(Where(f.path).diagnostic(f"not a readable Parquet file: {exc}"))
                continue
            schema = _columns(meta.schema.to_arrow_schema())
            if i == 0 or not self.schema.names:
                self.schema = schema
            elif schema.names != self.schema.names:
                problems.append(
                    Where(f.path).diagnostic(
                        f"columns {schema.names} differ from the first file's {self.schema.names} "
                        f"({self.files[0].path})",
                        "every Parquet file of a table needs the same columns",
                    )
                )
                continue
            rows.extend(_groups(i, meta, target_bytes))
        if problems:
            raise TableInputError(problems)
        self.schema = pa.schema(
            [
                pa.field(n, pa.string()) if n in self.string_columns else self.schema.field(n)
                for n in self.schema.names
            ]
        )
        return np.array(rows, np.uint64).reshape(-1, 5)

    def read(self, f: int, begin: int, end: int, first_line: int) -> pa.Table:
        path = self.files[f].path
        try:
            if self._open is None or self._open[0] != f:
                self._open = None  # closed with its last reference
                self._open = (f, pq.ParquetFile(path))
            table = self._open[1].read_row_groups(
                list(range(begin, end)), columns=self.schema.names, use_threads=False
            )
            return table.cast(self.schema) if table.schema != self.schema else table
        except (pa.ArrowException, OSError) as exc:
            self._open = None  # a retry opens the file afresh
            raise ValueError(f"{path}: row groups {begin}-{end - 1}: {exc}") from None

    def describe(self, f: int, begin: int, end: int, records: int, first_line: int) -> str:
        return (
            f"{self.files[f].path}: row groups {begin}-{end - 1}, rows "
            f"{first_line - 1}-{first_line - 1 + records - 1}"
        )


def _columns(schema: pa.Schema) -> pa.Schema:
    keep = [fld for fld in schema if not fld.name.startswith("__index_level_")]
    return pa.schema(keep)


def _groups(file: int, meta: pq.FileMetaData, target: int) -> list[tuple[int, int, int, int, int]]:
    """Consecutive row groups until their compressed bytes reach target (0: all)."""
    out = []
    start, nrows, nbytes, row0 = 0, 0, 0, 0
    for g in range(meta.num_row_groups):
        group = meta.row_group(g)
        nrows += group.num_rows
        nbytes += sum(group.column(c).total_compressed_size for c in range(group.num_columns))
        if target and nbytes >= target:
            if nrows:
                out.append((file, start, g + 1, nrows, row0 + 1))
            start, row0, nrows, nbytes = g + 1, row0 + nrows, 0, 0
    if start < meta.num_row_groups and nrows:
        out.append((file, start, meta.num_row_groups, nrows, row0 + 1))
    return out
