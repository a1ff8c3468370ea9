"""Which plan an input gets: the one entry point the runtime calls (runtime/job.py).

    mltable with read_*            -> tables.TableBatchPlan   (rows; byte-size split)
        + partition_keys           -> grouped TableBatchPlan or partitions.ArrowPartitionPlan
    mltable without read_*, uri_folder, uri_file
                                   -> files.FileBatchPlan     (files; count split)
        + partition_keys           -> partitions.FilePartitionPlan (keys from the paths)

Every plan offers n_batches, n_items, materialise(b), items_in(b), partition_key_value(b)
and describe(b), and is built in the driver before workers are forked. Errors in the
input are TableInputError (with file and line) or files.InputDataError.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from parajob.data.batch_plan import BatchPlan
from parajob.data.files import InputDataError, list_input_files, plan_file_batches
from parajob.data.input_errors import TableInputError, Where
from parajob.spec.sizes import MiniBatchSize

if TYPE_CHECKING:  # imported where used: a folder input never loads the table modules
    from parajob.data.mltable import MLTable
    from parajob.data.partitions import FilePartitionPlan

__all__ = ["plan_input"]


def plan_input(
    path: Path,
    input_type: str,
    size: MiniBatchSize | None,
    partition_keys: tuple[str, ...] | None = None,
    keys_where: Where | None = None,
) -> BatchPlan:
    """The mini-batch plan of the step's input_data (see the module docstring)."""
    keys_where = keys_where or Where(str(path), field="partition_keys")
    if input_type == "mltable":
        from parajob.data.mltable import load_mltable
        from parajob.data.tables import plan_table_batches

        table = load_mltable(path)
        if table.is_tabular:
            return plan_table_batches(
                table, size.for_tables() if size else None, partition_keys, keys_where
            )
        if partition_keys:
            return _mltable_file_partitions(table, partition_keys, keys_where)
    if partition_keys:
        return _folder_partitions(path, input_type, partition_keys, keys_where)
    return plan_file_batches(path, input_type, size.for_files() if size else None)


def _mltable_file_partitions(
    table: MLTable, keys: tuple[str, ...], where: Where
) -> FilePartitionPlan:
    from parajob.data import transforms as tf
    from parajob.data.mltable_paths import resolve_files
    from parajob.data.partitions import plan_file_partitions

    files = resolve_files(table)
    values: dict[str, list[Any]] = {}
    for step in table.steps:
        if isinstance(step, tf.PartitionColumns):
            found = [step.format.extract(f.relpath) for f in files]
            bad = [f.relpath for f, v in zip(files, found, strict=True) if v is None]
            if bad and not step.ignore_error:
                raise step.where.error(
                    f"'{bad[0]}' does not match partition format "
                    f"'{step.format.text}' ({len(bad)} files do not)"
                )
            for j, name in enumerate(step.format.names):
                values[name] = [v[j] if v is not None else None for v in found]
    _check_keys(keys, values, where, "the MLTable's extract_columns_from_partition_format")
    return plan_file_partitions([f.path for f in files], values, keys)


def _folder_partitions(
    path: Path, input_type: str, keys: tuple[str, ...], where: Where
) -> FilePartitionPlan:
    """uri_folder: keys from ``key=value`` folder names (Hive layout)."""
    from parajob.data.partitions import plan_file_partitions

    source = list_input_files(path, input_type)
    paths = source.paths(0, len(source))
    root = str(path.resolve())
    values: dict[str, list[Any]] = {k: [] for k in keys}
    for p in paths:
        parts = dict(
            seg.split("=", 1) for seg in os.path.relpath(p, root).split("/")[:-1] if "=" in seg
        )
        for k in keys:
            if k not in parts:
                raise where.error(
                    f"partition key '{k}' is not in the path of {p}",
                    "for a folder input, partition keys come from key=value folder names "
                    "(Store=1/Brand=x/...); or use an MLTable with "
                    "extract_columns_from_partition_format",
                )
            values[k].append(parts[k])
    return plan_file_partitions(paths, values, keys)


def _check_keys(
    keys: tuple[str, ...], values: dict[str, list[Any]], where: Where, source: str
) -> None:
    for k in keys:
        if k not in values:
            known = ", ".join(values) or "none"
            raise where.error(
                f"partition key '{k}' is not a partition column of the input "
                f"(partition columns: {known})",
                f"the keys of a file list come from {source}",
            )


__all__ += ["InputDataError", "TableInputError"]
