"""The dtype contract of table mini-batches, without mltable (issue 12).

The dtypes below are what Azure's mltable 1.7 gives for the same MLTables (established by
test_compat_mltable.py, which runs where mltable is installed); these tests pin them for
every environment, pandas 3 included (text is pandas' default: object, or str on pandas 3).
"""

from __future__ import annotations

from pathlib import Path

import mltable_corpus as corpus
import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from parajob.data import plan_input
from parajob.spec.sizes import parse_mini_batch_size

TEXT = str(pd.Series(["a"]).dtype)  # object; str on pandas 3
TEN_TEXT_COLUMNS = [TEXT] * 10
# A Parquet timestamp[us] column: datetime64[us] with pandas 2 and pyarrow 13 or later,
# datetime64[ns] before (mltable 1.7 needs pyarrow 23, so it gives [us]).
PARQUET_US = str(pa.table({"t": pa.array([0], pa.timestamp("us"))}).to_pandas()["t"].dtype)

# case -> dtypes of each mini-batch, in column order (see mltable_corpus.CASES).
EXPECTED: dict[str, list[list[str]]] = {
    "csv_kinds": [
        ["int64", "float64", "bool", "bool", "bool"]
        + ["datetime64[ns]", "datetime64[ns]", TEXT, TEXT, "float64"]
    ],
    "csv_empty": [
        ["float64", "float64", "object", "object", "object"]
        + ["datetime64[ns]", "datetime64[ns]", TEXT, TEXT, "float64"]
    ],
    "csv_no_infer": [TEN_TEXT_COLUMNS],
    "csv_empty_as_string": [["int64"] + [TEXT] * 9],
    "csv_convert": [
        ["float64", "float64", "object", "object", "float64"]
        + ["datetime64[ns]", "datetime64[ns]", TEXT, TEXT, "float64"]
    ],
    "csv_files": [["float64", "bool", TEXT], ["float64", "object", TEXT]],
    "csv_no_header": [["int64", "bool", TEXT]],
    "csv_from_first_file": [["int64", "bool"], ["int64", "bool"]],
    "jsonl": [["int64", "float64", "object", TEXT, "float64", TEXT]],
    "csv_more": [["bool", "float64", "bool", TEXT, TEXT]],
    "jsonl_flags": [["int64", "int64"]],
}


@pytest.fixture(scope="module")
def received(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[pd.DataFrame]]:
    names = [*EXPECTED, "csv_batches", "parquet"]
    return corpus.received_frames(tmp_path_factory.mktemp("dtypes"), names)


@pytest.mark.parametrize("case", list(EXPECTED))
def test_run_gets_mltables_numpy_dtypes(case: str, received: dict[str, list[pd.DataFrame]]) -> None:
    got = [[str(t) for t in frame.dtypes] for frame in received[case]]
    assert got == EXPECTED[case]


def test_missing_values_are_nan_none_and_nat(received: dict[str, list[pd.DataFrame]]) -> None:
    (frame,) = received["csv_empty"]
    assert frame["i"].tolist()[:2] == [1.0, pytest.approx(float("nan"), nan_ok=True)]
    assert frame["b_lower"].tolist() == [True, None, True, None]
    assert frame["d"].isna().tolist() == [False, True, False, True]
    assert frame["d"].iloc[1] is pd.NaT
    assert frame["s"].isna().tolist() == [False, True, False, True]  # None (pandas 3: NaN)
    (convert,) = received["csv_convert"]
    assert convert["zero_one"].tolist()[:2] == [0.0, 1.0]  # the cells' text, converted
    (jsonl,) = received["jsonl"]
    assert jsonl["f"].tolist()[:3] == [0.5, 1.0, 2.5]  # JSON 1 in a float field
    (whole,) = received["csv_kinds"]
    assert whole["zero_one"].tolist() == [False, True, True, False]
    assert whole.values.flatten().dtype == object  # the Azure scripts' .values.flatten()
    assert whole[["i", "f"]].values.flatten().dtype == np.float64


def test_an_integer_column_is_float64_only_in_mini_batches_with_a_gap(
    received: dict[str, list[pd.DataFrame]],
) -> None:
    """As mltable converts each slice: the Arrow type is fixed for the run, the numpy dtype
    of an integer (boolean) column follows the mini-batch's gaps."""
    batches = received["csv_batches"]
    assert len(batches) > 10
    for frame in batches:
        gap = frame["n"].isna().any()
        assert str(frame["n"].dtype) == ("float64" if gap else "int64")
        flag_gap = frame["flag"].isna().any()
        assert str(frame["flag"].dtype) == ("object" if flag_gap else "bool")
        assert [str(frame[c].dtype) for c in ("k", "s", "d")] == ["int64", TEXT, "datetime64[ns]"]
    dtypes = {str(f["n"].dtype) for f in batches}
    assert dtypes == {"int64", "float64"}
    whole = pd.concat(batches, ignore_index=True)
    assert whole["k"].tolist() == list(range(2000))
    assert int(whole["n"].isna().sum()) == len([k for k in range(2000) if k % 97 == 50])


def test_parquet_keeps_the_files_types(received: dict[str, list[pd.DataFrame]]) -> None:
    (frame,) = received["parquet"]
    assert [str(t) for t in frame.dtypes] == [
        "int64",
        "float64",
        "int32",
        "float64",
        "float64",
        "bool",
        "object",
        TEXT,
        PARQUET_US,
        "object",
    ]
    assert str(type(frame["date"].iloc[0]).__name__) == "date"


def plan(folder: Path, size: str = "1gb"):  # type: ignore[no-untyped-def]
    return plan_input(folder, "mltable", parse_mini_batch_size(size), None)


def test_a_value_that_does_not_fit_the_inferred_type_is_refused_naming_the_line(
    tmp_path: Path,
) -> None:
    """Where mltable silently makes it missing (or truncates 250.5 to 250): parajob fails the
    mini-batch with the file, the line and the fix."""
    folders = corpus.build(tmp_path)
    p = plan(folders["csv_late"])
    with pytest.raises(ValueError) as excinfo:
        p.materialise(0)
    message = str(excinfo.value)
    assert "csv_late/data.csv" in message and "250.5" in message
    assert "first 200 rows" in message and "convert_column_types" in message
    with pytest.raises(ValueError, match=r"jsonl_mixed/data.jsonl:1: .*m"):
        plan(folders["jsonl_mixed"]).materialise(0)


def test_the_sample_runs_on_into_the_next_files(tmp_path: Path) -> None:
    """a.csv has 2 rows of integers, b.csv a 3.5: the 200-row sample spans both files, so x
    is float64 in both mini-batches (it was int64 from a.csv alone, and b.csv failed)."""
    p = plan(corpus.build(tmp_path)["csv_files"])
    assert p.n_batches == 2
    assert [p.materialise(b)["x"].tolist() for b in range(2)][0] == [1.0, 2.0]
    assert str(p.materialise(1)["x"].dtype) == "float64"


def test_a_0_1_column_with_another_number_later_is_refused(tmp_path: Path) -> None:
    rows = "\n".join(f"{k},{k % 2 if k < 250 else 5}" for k in range(300))
    folder = tmp_path / "t"
    folder.mkdir()
    (folder / "data.csv").write_text("k,flag\n" + rows + "\n")
    (folder / "MLTable").write_text(corpus.CASES["csv_batches"][0])
    with pytest.raises(ValueError, match=r"bool.*'5'.*convert_column_types"):
        plan(folder).materialise(0)


def test_convert_column_types_float_keeps_one_dtype_in_every_mini_batch(tmp_path: Path) -> None:
    """The README's advice for a script that needs one dtype for an integer column."""
    mltable, files = corpus.CASES["csv_batches"]
    folder = tmp_path / "t"
    folder.mkdir()
    (folder / "data.csv").write_bytes(files["data.csv"])  # type: ignore[arg-type]
    (folder / "MLTable").write_text(
        mltable + "  - convert_column_types:\n      - columns: n\n        column_type: float\n"
    )
    p = plan(folder, "2kb")
    assert p.n_batches > 10
    assert {str(p.materialise(b)["n"].dtype) for b in range(p.n_batches)} == {"float64"}


def test_a_column_all_empty_in_a_mini_batch_keeps_its_dtype(tmp_path: Path) -> None:
    """README: float64 NaN / datetime64 NaT (mltable gives object None there)."""
    folder = tmp_path / "t"
    folder.mkdir()
    (folder / "a.csv").write_text("i,f,d,s\n7,0.5,2024-01-02,x\n")  # 1 alone: a boolean
    (folder / "b.csv").write_text("i,f,d,s\n,,,\n")
    (folder / "MLTable").write_text(
        "paths:\n  - file: ./a.csv\n  - file: ./b.csv\ntransformations:\n"
        "  - read_delimited:\n      delimiter: ','\n      header: all_files_same_headers\n"
    )
    p = plan(folder)
    assert p.n_batches == 2
    empty = p.materialise(1)
    assert [str(t) for t in empty.dtypes] == ["float64", "float64", "datetime64[ns]", TEXT]
    assert empty.isna().all().all()
