"""Tabular inputs at the plan level: MLTable reading, pieces, DataFrames, transformations.

End-to-end jobs over tables are in test_table_jobs.py.
"""

from __future__ import annotations

import io
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from parajob.data import TableInputError, plan_input
from parajob.data.mltable import load_mltable
from parajob.spec.sizes import parse_mini_batch_size


def make_table(folder: Path, mltable: str, files: dict[str, bytes | str]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name, data in files.items():
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data.encode() if isinstance(data, str) else data)
    (folder / "MLTable").write_text(textwrap.dedent(mltable), encoding="utf-8")
    return folder


def plan(folder: Path, size: str | None = "1kb", keys: tuple[str, ...] | None = None):  # type: ignore[no-untyped-def]
    return plan_input(folder, "mltable", parse_mini_batch_size(size) if size else None, keys)


def frames(p) -> list[pd.DataFrame]:  # type: ignore[no-untyped-def]
    return [p.materialise(b) for b in range(p.n_batches)]


def one_error(excinfo: pytest.ExceptionInfo[TableInputError]):  # type: ignore[no-untyped-def]
    assert len(excinfo.value.diagnostics) == 1, excinfo.value
    return excinfo.value.diagnostics[0]


CSV_MLTABLE = """\
    paths:
      - file: ./data.csv
    transformations:
      - read_delimited:
          delimiter: ','
          header: all_files_same_headers
"""


# -- whole-file equivalence --------------------------------------------------------------

CELL = st.one_of(
    st.text(alphabet="ab;é 1", max_size=5),
    st.text(alphabet='ab,"\n 1', max_size=5).map(lambda s: '"' + s.replace('"', '""') + '"'),
)


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    rows=st.lists(st.lists(CELL, min_size=3, max_size=3), max_size=60),
    crlf=st.booleans(),
    final_newline=st.booleans(),
    size=st.integers(20, 400),
)
def test_mini_batches_concatenate_to_the_whole_file(
    tmp_path: Path, rows: list[list[str]], crlf: bool, final_newline: bool, size: int
) -> None:
    end = "\r\n" if crlf else "\n"
    lines = [",".join(r) for r in [["x", "y", "z"], *rows]]
    lines = [line if line.strip() else '""' + line for line in lines]
    text = end.join(lines) + (end if final_newline else "")
    folder = make_table(
        tmp_path / f"t{abs(hash(text))}",
        CSV_MLTABLE.replace(
            "header: all_files_same_headers",
            "header: all_files_same_headers\n"
            "          support_multi_line: true\n          infer_column_types: false\n"
            "          empty_as_string: true",
        ),
        {"data.csv": text},
    )
    p = plan(folder, str(size))
    if not rows:  # a header alone (Arrow cannot read one without a line break)
        assert p.n_batches == 0
        return
    got = pd.concat(frames(p), ignore_index=True) if p.n_batches else None
    whole = pacsv.read_csv(
        io.BytesIO(text.encode()),
        parse_options=pacsv.ParseOptions(newlines_in_values=True),
        convert_options=pacsv.ConvertOptions(
            # by name: ConvertOptions(default_column_type=) needs pyarrow 25 (the floor is older)
            column_types=dict.fromkeys(["x", "y", "z"], pa.string()),
            strings_can_be_null=False,
            quoted_strings_can_be_null=False,
        ),
    ).to_pandas()
    if got is None:
        assert len(whole) == 0
        return
    pd.testing.assert_frame_equal(got, whole)
    for frame in frames(p):
        assert isinstance(frame.index, pd.RangeIndex) and frame.index.start == 0


def test_types_are_inferred_once_and_the_same_in_every_mini_batch(tmp_path: Path) -> None:
    rows = [
        f"{i},{i / 2},{'' if i % 997 == 50 else i},2024-01-{1 + i % 28:02d},"
        f"{'true' if i % 2 else 'false'},s{i}"
        for i in range(3000)
    ]
    folder = make_table(tmp_path, CSV_MLTABLE, {"data.csv": "i,f,n,d,b,s\n" + "\n".join(rows)})
    p = plan(folder, "4kb")
    assert p.n_batches > 10
    # Numpy dtypes as mltable gives them: n (integers with gaps) is float64 in the
    # mini-batches holding a gap, int64 in the others; every other column keeps one dtype.
    text = str(pd.Series(["a"]).dtype)
    dtypes = {tuple(map(str, f.dtypes)) for f in frames(p)}
    assert dtypes == {
        ("int64", "float64", n, "datetime64[ns]", "bool", text) for n in ("int64", "float64")
    }
    whole = pd.concat(frames(p), ignore_index=True)
    assert whole["i"].tolist() == list(range(3000))
    assert whole["n"].isna().sum() == 3 and p.n_items == 3000


# -- headers, encodings -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("header", "expected_columns", "rows"),
    [
        ("no_header", ["Column1", "Column2"], 7),  # every line is data
        ("from_first_file", ["a", "b"], 6),  # 3.csv's "a,b" is data
        ("all_files_same_headers", ["a", "b"], 4),
    ],
)
def test_header_modes(tmp_path: Path, header: str, expected_columns: list[str], rows: int) -> None:
    mltable = f"""\
        paths:
          - pattern: ./*.csv
        transformations:
          - read_delimited: {{header: {header}, infer_column_types: false}}
    """
    second = "a,b\n3,4\n5,6\n" if header != "from_first_file" else "3,4\n5,6\n7,8\n"
    folder = make_table(
        tmp_path, mltable, {"1.csv": "\ufeffa,b\n1,2\r\n", "2.csv": second, "3.csv": "a,b\n9,9\n"}
    )
    whole = pd.concat(frames(plan(folder)), ignore_index=True)
    assert whole.columns.tolist() == expected_columns
    assert len(whole) == rows


def test_different_headers_give_the_union_of_columns(tmp_path: Path) -> None:
    mltable = """\
        paths: [{pattern: ./*.csv}]
        transformations: [{read_delimited: {header: all_files_different_headers}}]
    """
    folder = make_table(tmp_path, mltable, {"1.csv": "a,b\n1,2\n", "2.csv": "b,c\n3,x\n"})
    whole = pd.concat(frames(plan(folder)), ignore_index=True)
    assert whole.columns.tolist() == ["a", "b", "c"]
    assert whole.astype(object).where(whole.notna(), None).values.tolist() == [
        [1, 2, None],
        [None, 3, "x"],
    ]


def test_latin1_and_semicolons(tmp_path: Path) -> None:
    mltable = """\
        paths: [{file: ./data.csv}]
        transformations:
          - read_delimited: {delimiter: ";", encoding: latin1}
    """
    folder = make_table(tmp_path, mltable, {"data.csv": "name;n\ncaf\xe9;1\n".encode("latin-1")})
    assert frames(plan(folder))[0].values.tolist() == [["café", 1]]


# -- transformations ---------------------------------------------------------------------


def test_transformations_apply_in_order(tmp_path: Path) -> None:
    mltable = """\
        paths:
          - pattern: ./**/*.csv
        transformations:
          - read_delimited:
              header: all_files_same_headers
              include_path_column: true
              empty_as_string: true
          - extract_columns_from_partition_format:
              partition_format: "{region}/{day:yyyy-MM-dd}/{file_name}.csv"
          - convert_column_types:
              - columns: [flag]
                column_type:
                  boolean: {true_values: ["y"], false_values: ["n"], mismatch_as: "false"}
              - columns: when
                column_type: {datetime: {formats: ["%d/%m/%Y", "%Y%m%d"]}}
              - columns: [amount]
                column_type: float
          - drop_columns: [Path, file_name]
          - keep_columns: [region, day, amount, flag, when, note]
    """
    data = "amount,flag,when,note\n1,y,31/12/2023,\n2,n,20240101,x\n3,?,,\n"
    folder = make_table(
        tmp_path, mltable, {"eu/2024-01-02/a.csv": data, "us/2024-01-03/b.csv": data}
    )
    whole = pd.concat(frames(plan(folder)), ignore_index=True)
    assert whole.columns.tolist() == ["region", "day", "amount", "flag", "when", "note"]
    assert whole["region"].tolist() == ["eu"] * 3 + ["us"] * 3
    assert str(whole["day"][0]) == "2024-01-02 00:00:00"
    assert whole["amount"].tolist() == [1.0, 2.0, 3.0] * 2
    assert whole["flag"].tolist() == [True, False, False] * 2
    assert [str(v)[:10] for v in whole["when"][:2]] == ["2023-12-31", "2024-01-01"]
    assert whole["note"].tolist()[:2] == ["", "x"]


def test_take_and_skip_are_row_windows_over_the_whole_table(tmp_path: Path) -> None:
    mltable = CSV_MLTABLE + "      - skip: 10\n      - take: 25\n      - skip: 5\n"
    rows = "".join(f"{i}\n" for i in range(200))
    folder = make_table(tmp_path, mltable, {"data.csv": "n\n" + rows})
    p = plan(folder, "50")
    assert pd.concat(frames(p))["n"].tolist() == list(range(15, 35))
    assert sum(p.items_in(b) for b in range(p.n_batches)) == 20


def test_a_conversion_that_fails_names_the_column_and_value(tmp_path: Path) -> None:
    mltable = CSV_MLTABLE + "      - convert_column_types: [{columns: n, column_type: int}]\n"
    folder = make_table(tmp_path, mltable, {"data.csv": "n\n1\n2\nthree\n"})
    with pytest.raises(ValueError, match="column 'n' to int.*three"):
        frames(plan(folder))


# -- JSON lines and Parquet --------------------------------------------------------------


def test_json_lines(tmp_path: Path) -> None:
    mltable = """\
        paths: [{file: ./data.jsonl}]
        transformations: [{read_json_lines: {invalid_lines: drop, include_path_column: true}}]
    """
    lines = "".join(f'{{"i": {i}, "s": "v{i}"}}\n' for i in range(500)) + 'not json\n{"i": 500}\n'
    folder = make_table(tmp_path, mltable, {"data.jsonl": lines})
    p = plan(folder, "2kb")
    whole = pd.concat(frames(p), ignore_index=True)
    assert whole["i"].tolist() == list(range(501)) and p.n_batches > 5
    assert whole.columns.tolist() == ["Path", "i", "s"]


def test_invalid_json_line_is_named(tmp_path: Path) -> None:
    mltable = "paths: [{file: ./d.jsonl}]\ntransformations: [read_json_lines]\n"
    folder = make_table(tmp_path, mltable, {"d.jsonl": '{"a": 1}\n{"a": 2}\n{"a":\n'})
    with pytest.raises(ValueError, match=r"d\.jsonl:3: .*invalid_lines: drop"):
        frames(plan(folder))


def test_parquet_mini_batches_are_whole_row_groups(tmp_path: Path) -> None:
    mltable = "paths: [{pattern: ./*.parquet}]\ntransformations: [{read_parquet: {}}]\n"
    folder = make_table(tmp_path, mltable, {})
    table = pa.table({"a": np.arange(10_000), "b": np.arange(10_000) * 0.5})
    pq.write_table(table, folder / "1.parquet", row_group_size=1000)
    pq.write_table(table.slice(0, 10), folder / "2.parquet")
    p = plan(folder, "20kb")
    sizes = [len(f) for f in frames(p)]
    assert sum(sizes) == 10_010 and all(s % 1000 == 0 for s in sizes[:-1]) and sizes[-1] == 10
    assert 2 < p.n_batches < 10


# -- bad input: one clear message with the place -----------------------------------------


def test_malformed_mltable(tmp_path: Path) -> None:
    folder = make_table(tmp_path, "paths:\n  - file: ./a.csv\n transformations: x\n", {})
    with pytest.raises(TableInputError) as exc:
        load_mltable(folder)
    d = one_error(exc)
    assert d.file.endswith("MLTable") and d.line == 3 and "invalid YAML" in d.message


def test_unknown_transformation_has_a_hint(tmp_path: Path) -> None:
    folder = make_table(
        tmp_path,
        "paths: [{file: ./a.csv}]\ntransformations:\n  - read_delimted: {header: no_header}\n",
        {"a.csv": "1\n"},
    )
    d = one_error(pytest.raises(TableInputError, load_mltable, folder))
    assert (d.line, d.field) == (3, "transformations[0].read_delimted")
    assert "unknown transformation" in d.message and "read_delimited" in (d.hint or "")


@pytest.mark.parametrize(
    ("step", "message"),
    [
        ("read_delimited: {header: first_line}", "expected one of no_header"),
        ("filter: 'col(\"a\") > 1'", "filter expressions are not supported"),
        ("take: -1", "expected a row count"),
        ("convert_column_types: [{columns: a, column_type: decimal}]", "unknown column_type"),
    ],
)
def test_bad_steps(tmp_path: Path, step: str, message: str) -> None:
    folder = make_table(
        tmp_path, f"paths: [{{file: ./a.csv}}]\ntransformations:\n  - {step}\n", {"a.csv": "a\n1\n"}
    )
    d = one_error(pytest.raises(TableInputError, load_mltable, folder))
    assert d.line == 3 and message in d.message


def test_missing_files_point_at_their_entry(tmp_path: Path) -> None:
    folder = make_table(tmp_path, CSV_MLTABLE.replace("./data.csv", "./nope.csv"), {})
    d = one_error(pytest.raises(TableInputError, plan, folder))
    assert d.line == 2 and "not found" in d.message


def test_a_step_naming_a_missing_column(tmp_path: Path) -> None:
    folder = make_table(
        tmp_path, CSV_MLTABLE + "      - drop_columns: [nmae]\n", {"data.csv": "name\nx\n"}
    )
    d = one_error(pytest.raises(TableInputError, plan, folder))
    assert d.line == 7 and "no column 'nmae'" in d.message and "name" in (d.hint or "")


def test_a_ragged_row_names_file_and_line(tmp_path: Path) -> None:
    folder = make_table(tmp_path, CSV_MLTABLE, {"data.csv": "a,b\n1,2\n3,4,5\n"})
    d = one_error(pytest.raises(TableInputError, plan, folder))
    assert (Path(d.file).name, d.line) == ("data.csv", 3)
    assert "expected 2 fields" in d.message and "found 3" in d.message


def test_headers_that_differ(tmp_path: Path) -> None:
    mltable = "paths: [{pattern: ./*.csv}]\ntransformations: [read_delimited]\n"
    folder = make_table(tmp_path, mltable, {"1.csv": "a,b\n1,2\n", "2.csv": "\n\na,c\n1,2\n"})
    d = one_error(pytest.raises(TableInputError, plan, folder))
    assert (Path(d.file).name, d.line) == ("2.csv", 3) and "all_files_different_headers" in d.hint


# -- partitions --------------------------------------------------------------------------

OJ_MLTABLE = """\
    type: mltable
    paths:
      - pattern: ./**/*.csv
    transformations:
      - read_delimited: {delimiter: ',', header: all_files_same_headers, include_path_column: true}
      - extract_columns_from_partition_format:
          partition_format: "{Store}/{Brand}/{file_name}.{extension}"
      - drop_columns: [Path, file_name, extension]
"""


def test_partition_keys_from_paths_group_whole_files(tmp_path: Path) -> None:
    files = {
        f"{s}/{b}/part{k}.csv": f"week,sales\n{s},{k}\n"
        for s in (2, 10)
        for b in ("x", "y")
        for k in range(2)
    }
    p = plan(make_table(tmp_path, OJ_MLTABLE, files), keys=("Store", "Brand"))
    assert p.n_batches == 4
    assert [p.partition_key_value(b) for b in range(4)] == [
        {"Store": "10", "Brand": "x"},
        {"Store": "10", "Brand": "y"},
        {"Store": "2", "Brand": "x"},
        {"Store": "2", "Brand": "y"},
    ]
    first = p.materialise(0)
    assert first.columns.tolist() == ["week", "sales", "Store", "Brand"]
    assert first["sales"].tolist() == [0, 1] and set(first["Store"]) == {"10"}


def test_partition_keys_on_data_columns_slice_a_shared_sorted_table(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    stores, values = rng.integers(0, 7, 5000), np.arange(5000)
    data = "store,v\n" + "".join(f"{s},{v}\n" for s, v in zip(stores, values, strict=True))
    p = plan(make_table(tmp_path, CSV_MLTABLE, {"data.csv": data}), keys=("store",))
    assert type(p).__name__ == "ArrowPartitionPlan" and p.n_batches == 7
    for b in range(7):
        frame = p.materialise(b)
        key = p.partition_key_value(b)["store"]
        assert frame["v"].tolist() == values[stores == key].tolist()  # in input order


def test_a_partition_key_that_is_not_a_column(tmp_path: Path) -> None:
    folder = make_table(tmp_path, OJ_MLTABLE, {"1/x/a.csv": "week\n1\n"})
    d = one_error(pytest.raises(TableInputError, plan, folder, None, ("Stroe",)))
    assert "'Stroe' is not a column" in d.message and "Store" in d.message


def test_file_list_partitions(tmp_path: Path) -> None:
    mltable = """\
        paths: [{pattern: ./**/*.png}]
        transformations:
          - extract_columns_from_partition_format: {partition_format: "{user}/{season}/{name}.png"}
    """
    files = {f"{u}/{s}/{n}.png": b"" for u in ("ann", "bob") for s in ("w", "s") for n in "ab"}
    p = plan(make_table(tmp_path, mltable, files), keys=("user",))
    assert p.n_batches == 2 and p.partition_key_value(1) == {"user": "bob"}
    assert [os.path.basename(x) for x in p.materialise(0)] == ["a.png", "b.png"] * 2


def test_planning_leaves_no_thread_of_its_own(tmp_path: Path) -> None:
    """Workers are forked after planning: the scanner's threads must all be joined.

    Importing numpy and pyarrow starts idle native pools (OpenBLAS, Arrow's CPU and IO
    pools, jemalloc) that register fork handlers and that Arrow may grow lazily; our own
    helper threads are named parajob-*, and none may be left.
    """
    rows = "".join(f"{i},{i % 5}\n" for i in range(300_000))
    folder = make_table(tmp_path, CSV_MLTABLE, {"data.csv": "a,b\n" + rows})
    code = textwrap.dedent(f"""
        import io, os
        from pathlib import Path
        import pyarrow as pa, pyarrow.csv as pacsv
        from parajob import _core
        from parajob.data import plan_input
        from parajob.spec.sizes import parse_mini_batch_size
        pacsv.read_csv(io.BytesIO(b"a\\n1\\n"), read_options=pacsv.ReadOptions(use_threads=False))
        # Arrow's CPU pool starts lazily on the first sort/group-by: start it for the
        # baseline too (it is Arrow's, idle and fork-aware, not the planner's own).
        pa.table({{"k": list(range(100_000))}}).sort_by("k").group_by("k").aggregate([])
        def comms():  # a task that ends between listdir and open is no thread left
            names = []
            for t in os.listdir("/proc/self/task"):
                try:
                    names.append(open(f"/proc/self/task/{{t}}/comm").read().strip())
                except FileNotFoundError:
                    pass
            return names
        def threads():  # the planner's own helper threads are named parajob-*
            return sum(1 for c in comms() if c.startswith("parajob-"))
        before = threads()
        scan = _core.scan_delimited({str(folder / "data.csv")!r}, threads=4, thread_bytes=1)
        p = plan_input(Path({str(folder)!r}), "mltable", parse_mini_batch_size("64kb"), ("b",))
        p2 = plan_input(Path({str(folder)!r}), "mltable", parse_mini_batch_size("64kb"))
        names = sorted(comms())
        print(p.n_batches, p2.n_batches, scan.records, before, threads(), ",".join(names))
    """)
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.split()
    assert out[0] == "5" and int(out[1]) > 10 and out[2] == "300001"
    assert int(out[3]) == 0 and int(out[4]) == 0, out[5]  # none of ours outlives the call


def test_folder_partitions_from_key_value_names(tmp_path: Path) -> None:
    for store in ("1", "2"):
        for month in ("01", "02"):
            folder = tmp_path / "data" / f"store={store}" / f"month={month}"
            folder.mkdir(parents=True)
            (folder / "part.txt").write_text("x")
    p = plan_input(tmp_path / "data", "uri_folder", None, ("store",))
    assert p.n_batches == 2 and p.partition_key_value(0) == {"store": "1"}
    assert len(p.materialise(1)) == 2
    with pytest.raises(TableInputError, match="'region' is not in the path"):
        plan_input(tmp_path / "data", "uri_folder", None, ("region",))


def test_a_value_that_does_not_fit_the_inferred_type_names_its_line(tmp_path: Path) -> None:
    rows = [str(i) for i in range(300)]
    rows[250] = "n/a"
    folder = make_table(tmp_path, CSV_MLTABLE, {"data.csv": "n\n" + "\n".join(rows) + "\n"})
    p = plan(folder, "200")
    assert str(p.schema.field("n").type) == "int64"
    with pytest.raises(ValueError, match=r"data\.csv: rows from line \d+.*n/a.*first 200 rows"):
        frames(p)
