"""Planning a partitioned table on every core: read, group by the keys, gather once.

    TableBatchPlan pieces (~1 MB each) --read_pieces: one thread per core--> Arrow tables
        | concat (zero-copy)
        v
    keys --dictionary_encode + sorted dictionary--> per-row key ranks (nulls last)
        --mixed radix--> per-row group code --counting sort--> permutation, group offsets
        v
    gather: each column once (combine_chunks + take(permutation); text of few distinct
            values through a dictionary), columns on the threads; a column's unsorted
            chunks are freed as soon as it is gathered
        v
    one single-chunk Arrow table sorted by the keys (rows keep their order in a group)

Why not a sort of the table (issue 13's profile of the old planner, 2.3-2.6 s serial):
``sort_indices`` compared key values row by row (0.67 s, strings included) and 32
``take`` calls each gathered from a 147-chunk table; here the keys are compared only
among the distinct values (3,000 groups: microseconds), the 2M rows are ordered by a
counting sort of small integers, and every column is gathered exactly once.

Invariants: the order of groups is the old one (ascending per key as Arrow's sort puts
it: NaN after numbers, nulls last; but 0.0 and -0.0 are now one key), and so are the rows
within a group (input order);
every helper thread is joined before a function returns (the driver forks next); the
result is plain Arrow memory in the driver's heap, shared copy-on-write with the workers
forked afterwards (nothing writes to it again).
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

__all__ = ["Grouping", "gather", "group_rows", "read_pieces"]

T = TypeVar("T")

# Helper threads are named parajob-* (tests/test_tables.py checks that none outlives
# planning). Arrow's readers and kernels called here release the GIL.
THREAD_PREFIX = "parajob-partitions"


def threads() -> int:
    """Threads for planning: the CPUs this process may run on (at most 8: the CSV parse
    and the gathers scale no further on one memory bus)."""
    return max(1, min(8, len(os.sched_getaffinity(0))))


def parallel_map(fn: Callable[[int], T], n: int) -> list[T]:
    """[fn(0), ..., fn(n - 1)] on threads(); the first error (in index order) is raised
    after every thread has stopped."""
    if n <= 1 or threads() == 1:
        return [fn(i) for i in range(n)]
    with ThreadPoolExecutor(threads(), thread_name_prefix=THREAD_PREFIX) as pool:
        return list(pool.map(fn, range(n)))


def read_pieces(read: Callable[[int], pa.Table], n: int, schema: pa.Schema) -> pa.Table:
    """The n pieces read on all cores and concatenated in piece order (zero-copy)."""
    parts = parallel_map(read, n)
    return pa.concat_tables(parts) if parts else schema.empty_table()


@dataclass(frozen=True)
class Grouping:
    """Rows of a table grouped by key values: group g is rows
    ``order[offsets[g]:offsets[g + 1]]``; ``keys[g]`` its values."""

    order: np.ndarray  # (n_rows,) int64 permutation, stable within a group
    offsets: np.ndarray  # (n_groups + 1,) int64
    keys: list[dict[str, Any]]


def group_rows(table: pa.Table, keys: Sequence[str]) -> Grouping:
    """Group the rows of table by keys (columns of single values: the caller rejects
    lists and structs; a dictionary column, such as a Parquet categorical, is grouped by
    its values)."""
    n = table.num_rows
    if n == 0:
        return Grouping(np.zeros(0, np.int64), np.zeros(1, np.int64), [])
    ranks: list[np.ndarray] = []
    values: list[list[Any]] = []
    sizes: list[int] = []
    for name in keys:
        column = table.column(name)
        if pa.types.is_dictionary(column.type):  # each chunk may have its own dictionary
            column = column.cast(column.type.value_type)
        rank, sorted_values = _key_ranks(column)
        ranks.append(rank)
        values.append(sorted_values)
        sizes.append(len(sorted_values))
    code, combos = _combine(ranks, sizes, n)
    del ranks
    order, counts = _counting_sort(code, len(combos))
    offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    digits = _digits(combos, sizes)
    key_dicts = [
        {name: values[k][int(digits[k][g])] for k, name in enumerate(keys)}
        for g in range(len(combos))
    ]
    return Grouping(order, offsets, key_dicts)


def encode(column: pa.ChunkedArray | pa.Array) -> pa.DictionaryArray:
    """column dictionary-encoded as one array, without first copying its values into one
    chunk (0.13 s for a 2M-row text column): Arrow encodes the chunks with one hash table,
    so every chunk of the result holds the same, final dictionary (pyarrow 14 to 26);
    should a version ever give per-chunk dictionaries, the chunks are combined first."""
    encoded = pc.dictionary_encode(column)
    if isinstance(encoded, pa.DictionaryArray):  # column was one array
        return encoded
    chunks = encoded.chunks
    if not chunks:
        return pc.dictionary_encode(column.combine_chunks())
    dictionary = chunks[-1].dictionary
    if any(len(c.dictionary) != len(dictionary) for c in chunks):
        return pc.dictionary_encode(column.combine_chunks())
    indices = pa.concat_arrays([c.indices for c in chunks])
    return pa.DictionaryArray.from_arrays(indices, dictionary)


def _counting_sort(code: np.ndarray, n_groups: int) -> tuple[np.ndarray, np.ndarray]:
    """(order, counts): rows stably ordered by code in [0, n_groups), and rows per code.

    pandas' own counting sort (what its groupby orders rows with) is linear: 20-30 ms for
    2M rows where numpy's stable argsort takes 50-150 ms (radix on int16; timsort
    beyond). It is pandas-internal, so numpy's sort stands in if it is ever gone."""
    try:
        groupsort_indexer = importlib.import_module("pandas._libs.algos").groupsort_indexer
        order, counts = groupsort_indexer(code.astype(np.intp, copy=False), n_groups)
        return np.asarray(order, np.int64), np.asarray(counts[1:], np.int64)  # [0]: code -1
    except (ImportError, AttributeError, TypeError, ValueError):
        return _argsort(code, n_groups)


def _argsort(code: np.ndarray, n_groups: int) -> tuple[np.ndarray, np.ndarray]:
    # int16 codes sort by radix (linear); more groups fall back to numpy's timsort.
    kind = np.int16 if n_groups <= np.iinfo(np.int16).max else np.int64
    order = np.argsort(code.astype(kind, copy=False), kind="stable").astype(np.int64, copy=False)
    return order, np.bincount(code, minlength=n_groups).astype(np.int64)


def _key_ranks(column: pa.ChunkedArray) -> tuple[np.ndarray, list[Any]]:
    """Per row, the rank of its value among the column's distinct values in ascending
    order (Arrow's sort: NaN after numbers, null last); and those values, as Python."""
    if column.type in (pa.float32(), pa.float64()):
        # -0.0 == 0.0 (as in Python and pandas' groupby): one partition, keyed 0.0. A hash
        # tells them apart, so -0.0 + 0.0 makes them the same bits; NaN stays NaN (one
        # partition). The old row sort left them equal and interleaved: one key's rows in
        # several mini-batches.
        column = pc.add(column, pa.scalar(0.0, column.type))
    encoded = encode(column)
    dictionary = encoded.dictionary
    # The dictionary holds each value once, nulls are masked indices: rank the distinct
    # values with the sort the old planner ran on every row, and give null the last rank.
    by_value = pc.sort_indices(dictionary).to_numpy()
    rank_of_index = np.empty(len(dictionary) + 1, np.int64)
    rank_of_index[by_value] = np.arange(len(dictionary))
    rank_of_index[len(dictionary)] = len(dictionary)
    indices = pc.fill_null(encoded.indices, len(dictionary))
    rank = rank_of_index[indices.to_numpy(zero_copy_only=False)]
    sorted_values = dictionary.take(pa.array(by_value)).to_pylist()
    if encoded.null_count:
        sorted_values.append(None)
    return rank, sorted_values


def _combine(ranks: list[np.ndarray], sizes: list[int], n: int) -> tuple[np.ndarray, np.ndarray]:
    """Per row, the index of its key combination among the combinations present, in
    lexicographic order of the ranks; and those combinations as mixed-radix numbers."""
    span = 1
    for size in sizes:
        span *= max(size, 1)
    if span < 2**62:  # one int64 per row: first key most significant
        mixed = np.zeros(n, np.int64)
        for rank, size in zip(ranks, sizes, strict=True):
            mixed = mixed * max(size, 1) + rank
        if span <= n + 1024:  # dense: a lookup table (<= 9n bytes) instead of a sort
            present = np.zeros(span, bool)
            present[mixed] = True
            combos = np.flatnonzero(present)
            lookup = np.zeros(span, np.int64)
            lookup[combos] = np.arange(len(combos))
            return lookup[mixed], combos
        combos, code = np.unique(mixed, return_inverse=True)
        return code.reshape(-1).astype(np.int64), combos
    # So many distinct values that their product overflows: unique rows of the ranks.
    stacked = np.column_stack(ranks)
    rows, code = np.unique(stacked, axis=0, return_inverse=True)
    return code.reshape(-1).astype(np.int64), rows


def _digits(combos: np.ndarray, sizes: list[int]) -> list[np.ndarray]:
    """Per key, the rank of each combination's value (undoing _combine)."""
    if combos.ndim == 2:
        return [combos[:, k] for k in range(len(sizes))]
    digits: list[np.ndarray] = []
    rest = combos.copy()
    for size in reversed(sizes):
        digits.append(rest % max(size, 1))
        rest //= max(size, 1)
    return digits[::-1]


def gather(columns: list[pa.ChunkedArray | None], schema: pa.Schema, order: np.ndarray) -> pa.Table:
    """The rows of the table of these columns in order, one chunk per column, the
    columns gathered on the threads.

    Takes the list over: each entry is set to None once its column is gathered, so its
    unsorted chunks are freed then if the caller holds no other reference to them (drop
    the table first). Peak memory: the table plus about one column per thread."""
    indices = pa.array(order)

    def one(i: int) -> pa.Array:
        column = columns[i]
        assert column is not None
        columns[i] = None  # the last reference to its chunks: freed once combined
        if _few_distinct(column):
            # Gathering text copies each value from anywhere in a buffer of the column's
            # size (0.19-0.33 s per 2M-row text column); from a dictionary of a few
            # values the same bytes come out at a third of the cost, encoding included.
            encoded = encode(column)
            del column
            return encoded.dictionary.take(encoded.indices.take(indices))
        combined = column.combine_chunks() if column.num_chunks != 1 else column.chunk(0)
        del column
        return combined.take(indices)

    return pa.Table.from_arrays(parallel_map(one, len(columns)), schema=schema)


DISTINCT_SAMPLE = 65536


def _few_distinct(column: pa.ChunkedArray) -> bool:
    """A text column whose first DISTINCT_SAMPLE values hold at most 1 distinct in 64."""
    if not (pa.types.is_string(column.type) or pa.types.is_large_string(column.type)):
        return False
    if len(column) < 2 * DISTINCT_SAMPLE:
        return False
    sample = column.slice(0, DISTINCT_SAMPLE)
    return bool(len(pc.unique(sample)) <= DISTINCT_SAMPLE // 64)
