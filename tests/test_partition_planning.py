"""Partitioned tables keyed on data columns: planned on every core, converted by chunks.

    CSV --plan_input(keys)--> ArrowPartitionPlan: groups by key rank (partition_groups.py)
        --materialise(b)--> a chunk's frame sliced (partition_frames.py)   == reference:
    CSV --plan_input()--> all rows (Arrow) --rows of key k, in input order--> dtypes.to_pandas

The reference is the conversion run() got before chunks (each partition's rows alone), so
the frames must match it exactly: columns, dtypes, values, a fresh RangeIndex.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pytest
from conftest import run_job
from test_table_jobs import write_table_job

from parajob.data import TableInputError, plan_input
from parajob.data.dtypes import to_pandas
from parajob.data.partition_frames import CHUNK_ROWS
from parajob.spec.sizes import parse_mini_batch_size

CSV_MLTABLE = """\
paths:
  - file: ./data.csv
transformations:
  - read_delimited: {delimiter: ',', header: all_files_same_headers}
"""


def write_table(folder: Path, text: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "data.csv").write_text(text, encoding="utf-8")
    (folder / "MLTable").write_text(CSV_MLTABLE, encoding="utf-8")
    return folder


def mixed_csv(n: int) -> str:
    """n rows: integer, boolean (0/1), float, text and date columns, with gaps in some
    partitions only (k == 3 has a missing count and flag, k == 5 missing text), a partition
    larger than a chunk (k == 0) and many small ones; the first 200 rows (type inference)
    hold no gaps."""
    rng = np.random.default_rng(13)
    k = np.where(rng.random(n) < 0.45, 0, rng.integers(1, 400, n))
    k[:200] = rng.integers(6, 400, 200)
    lines = ["k,count,flag,price,name,day"]
    for i in range(n):
        key = int(k[i])
        count = "" if key == 3 and i % 2 else str(i % 1000)
        flag = "" if key == 3 and i % 3 == 0 else str(i % 2)
        name = "" if key == 5 and i % 2 else f"n{i % 37}"
        lines.append(f"{key},{count},{flag},{i / 7:.4f},{name},2024-01-{1 + i % 28:02d}")
    return "\n".join(lines) + "\n"


def reference_frames(folder: Path, key: str) -> dict[object, pd.DataFrame]:
    """Each key value's rows converted alone, in input order."""
    whole = plan_input(folder, "mltable", parse_mini_batch_size("1mb"))
    table = pa.concat_tables(whole.materialise_arrow(b) for b in range(whole.n_batches))  # type: ignore[union-attr]
    frames = {}
    for value in pc.unique(table.column(key)).to_pylist():
        mask = (
            pc.is_null(table.column(key)) if value is None else pc.equal(table.column(key), value)
        )
        frames[value] = to_pandas(table.filter(mask))
    return frames


def test_partition_frames_equal_each_partition_converted_alone(tmp_path: Path) -> None:
    n = 3 * CHUNK_ROWS  # several chunks, some with gaps in an integer column, some without
    folder = write_table(tmp_path / "t", mixed_csv(n))
    plan = plan_input(folder, "mltable", None, ("k",))
    expected = reference_frames(folder, "k")
    assert type(plan).__name__ == "ArrowPartitionPlan" and plan.n_batches == len(expected)
    keys = [plan.partition_key_value(b)["k"] for b in range(plan.n_batches)]  # type: ignore[index]
    assert keys == sorted(expected)  # ascending: mini-batch ids are stable across runs
    # A worker's claims interleave with the others': visit the partitions out of order.
    for b in [*range(0, plan.n_batches, 2), *range(plan.n_batches - 1, 0, -2)]:
        got, want = plan.materialise(b), expected[keys[b]]
        assert got.dtypes.to_dict() == want.dtypes.to_dict(), keys[b]
        assert isinstance(got.index, pd.RangeIndex) and got.index.equals(want.index)
        pd.testing.assert_frame_equal(got, want, check_exact=True)
    counts = {k: str(expected[k]["count"].dtype) for k in (0, 3)}
    assert counts == {0: "int64", 3: "float64"}  # a gap changes only its partition's dtype


def test_nulls_last_and_keys_that_compare_equal_are_one_partition(tmp_path: Path) -> None:
    # 0.0 and -0.0 are equal keys (as in Python and pandas); every NaN is one key. The old
    # row sort left 0.0 and -0.0 interleaved: one key's rows in several mini-batches.
    rows = ["0.0,1", "-0.0,2", "0.0,3", "nan,4", "1.5,5", ",6", "-0.0,7", "nan,8", "-2,9"]
    folder = write_table(tmp_path / "t", "k,v\n" + "\n".join(rows) + "\n")
    plan = plan_input(folder, "mltable", None, ("k",))
    keys = [plan.partition_key_value(b)["k"] for b in range(plan.n_batches)]  # type: ignore[index]
    values = [plan.materialise(b)["v"].tolist() for b in range(plan.n_batches)]
    assert values == [[9], [1, 2, 3, 7], [5], [4, 8], [6]]
    assert keys[:3] == [-2.0, 0.0, 1.5] and np.isnan(keys[3]) and keys[4] is None


def test_two_keys_group_in_ascending_order_of_both(tmp_path: Path) -> None:
    rng = np.random.default_rng(5)
    stores, brands = rng.integers(1, 9, 4000), rng.choice(["b", "a", "c", ""], 4000)
    lines = [f"{s},{b},{i}" for i, (s, b) in enumerate(zip(stores, brands, strict=True))]
    folder = write_table(tmp_path / "t", "store,brand,i\n" + "\n".join(lines) + "\n")
    plan = plan_input(folder, "mltable", None, ("store", "brand"))
    keys = [plan.partition_key_value(b) for b in range(plan.n_batches)]
    want = sorted(
        {(int(s), b or None) for s, b in zip(stores, brands, strict=True)},
        key=lambda sb: (sb[0], sb[1] is None, sb[1] or ""),
    )
    assert [(k["store"], k["brand"]) for k in keys] == want  # type: ignore[index]
    for b, (store, brand) in enumerate(want):
        rows = [
            i
            for i, (s, x) in enumerate(zip(stores, brands, strict=True))
            if s == store and (x or None) == brand
        ]
        assert plan.materialise(b)["i"].tolist() == rows


def test_a_retry_gets_the_rows_unchanged_after_run_wrote_into_its_frame(tmp_path: Path) -> None:
    """Partitions share a converted chunk inside a worker: a run() that writes into its
    frame and fails must not change what its retry (or a neighbour) receives."""
    rows = [f"{i % 50},{i}" for i in range(5000)]
    script = textwrap.dedent("""
        import os
        def run(mini_batch, context):
            first = int(mini_batch["v"].sum())
            mini_batch.loc[:, "v"] = -1  # in place, then fail the first attempt of each
            marker = os.path.join(os.path.dirname(__file__), f"tried{context.minibatch_index}")
            if not os.path.exists(marker):
                open(marker, "w").close()
                raise RuntimeError("first attempt")
            return [f"{context.partition_key_value['k']}:{first}"]
    """)
    write_table_job(
        tmp_path,
        CSV_MLTABLE,
        {"data.csv": "k,v\n" + "\n".join(rows) + "\n"},
        script,
        mini_batch_size=None,
        extra_step="partition_keys: [k]\nmini_batch_error_threshold: -1\n",
        concurrency=1,
    )
    result = run_job(tmp_path)
    assert result.returncode == 0, result.stderr
    want = [f"{k}:{sum(range(k, 5000, 50))}" for k in range(50)]
    assert sorted(result.output().splitlines()) == sorted(want)


def test_the_counting_sort_and_its_numpy_stand_in_agree() -> None:
    """pandas' counting sort is internal to pandas; numpy's stable sort stands in for it."""
    from parajob.data.partition_groups import _argsort, _counting_sort

    code = np.random.default_rng(2).integers(0, 40_000, 100_000)  # beyond int16's radix
    for n_groups, codes in ((40_000, code), (300, code % 300)):
        want = np.argsort(codes, kind="stable")
        for order, counts in (_counting_sort(codes, n_groups), _argsort(codes, n_groups)):
            assert np.array_equal(order, want)
            assert np.array_equal(counts, np.bincount(codes, minlength=n_groups))


def test_a_chunked_column_encodes_as_its_combined_copy_does() -> None:
    """Keys are dictionary-encoded chunk by chunk: the result must be the one-chunk
    encoding (chunks of any size, empty ones and nulls included)."""
    from parajob.data.partition_groups import encode

    column = pa.chunked_array([["b", None, "a"], [], ["c", "b"], ["a"]])
    got, want = encode(column), pc.dictionary_encode(column.combine_chunks())
    assert got.dictionary.equals(want.dictionary) and got.indices.equals(want.indices)
    assert encode(pa.chunked_array([], pa.string())).to_pylist() == []


def test_a_categorical_parquet_key_groups_by_its_values(tmp_path: Path) -> None:
    folder = tmp_path / "t"
    folder.mkdir()
    frame = pd.DataFrame({"k": pd.Categorical(["b", "a", "b", None, "c"]), "v": [1, 2, 3, 4, 5]})
    frame.to_parquet(folder / "d.parquet")  # pandas keeps the categorical: a dictionary column
    (folder / "MLTable").write_text(
        "paths:\n  - file: ./d.parquet\ntransformations:\n  - read_parquet\n", encoding="utf-8"
    )
    plan = plan_input(folder, "mltable", None, ("k",))
    keys = [plan.partition_key_value(b) for b in range(plan.n_batches)]
    assert keys == [{"k": "a"}, {"k": "b"}, {"k": "c"}, {"k": None}]
    assert [plan.materialise(b)["v"].tolist() for b in range(4)] == [[2], [1, 3], [5], [4]]


def test_a_list_column_as_partition_key_is_bad_input(tmp_path: Path) -> None:
    folder = tmp_path / "t"
    folder.mkdir()
    (folder / "d.jsonl").write_text('{"k": [1, 2], "v": 1}\n{"k": [3], "v": 2}\n')
    (folder / "MLTable").write_text(
        "paths:\n  - file: ./d.jsonl\ntransformations:\n  - read_json_lines\n", encoding="utf-8"
    )
    with pytest.raises(TableInputError) as info:
        plan_input(folder, "mltable", None, ("k",))
    (d,) = info.value.diagnostics
    assert "partition key 'k' is a column of list<item: int64> values" in d.message
    assert "one value per row" in d.message and d.hint
