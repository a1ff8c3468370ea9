"""Oracle: the DataFrames run() receives equal what Azure's ``mltable`` gives (issue 12).

Marked ``compat`` and deselected by default (pyproject addopts); run with
``pytest -m compat`` where ``pip install .[compat]`` put mltable (.ci/test-compat makes such
a venv; mltable pins pandas<3). Without mltable the module is skipped with that reason.

    tests/mltable_corpus.py --build--> MLTable folders
        --> mltable.load(folder)[.skip(lo)].take(n).to_pandas_dataframe()   (the oracle)
        --> parajob run, run() pickles each mini-batch                       (what we give)
    compare per mini-batch: columns, dtype per column, values (NaN/None/NaT as missing)

A mini-batch of rows [lo, lo + n) is compared with mltable's slice of the same rows: that
is what Azure's parallel job hands run() for a mini-batch, and mltable converts each slice
on its own (an integer column is float64 only in slices with a missing value).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import mltable_corpus as corpus
import pandas as pd
import pytest

pytestmark = pytest.mark.compat
mltable = pytest.importorskip(
    "mltable", reason="the mltable oracle needs `pip install .[compat]` (see .ci/test-compat)"
)

# (case, column) -> why parajob deliberately gives another value than mltable there.
KNOWN = {
    ("csv_convert", "zero_one"): "mltable converts the column it inferred as boolean to int "
    "as all missing; parajob converts the text 0/1 to integers",
    ("jsonl", "f"): "mltable makes 1 missing in a field whose first value is 0.5; parajob "
    "widens it to 1.0",
}
COMPARED = [n for n in corpus.CASES if n not in corpus.REFUSED]


@pytest.fixture(scope="module")
def received(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[pd.DataFrame]]:
    return corpus.received_frames(tmp_path_factory.mktemp("compat"), COMPARED)


@pytest.fixture(scope="module")
def folders(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return corpus.build(tmp_path_factory.mktemp("oracle"))


def azure(folder: Path, lo: int, n: int, whole: bool) -> pd.DataFrame:
    table = mltable.load(str(folder))
    if not whole:
        table = (table.skip(lo) if lo else table).take(n)
    frame: pd.DataFrame = table.to_pandas_dataframe()
    return frame


def parquet_file(folder: Path, k: int) -> pd.DataFrame:
    """mltable's frame of the k-th Parquet file alone (a parajob mini-batch is one file)."""
    files = sorted(f for f in folder.iterdir() if f.suffix == ".parquet")
    frame: pd.DataFrame = mltable.from_parquet_files(
        [{"file": str(files[k])}]
    ).to_pandas_dataframe()
    return frame


def values(column: pd.Series) -> list[Any]:
    out = []
    for v in column.tolist():
        missing = v is None or v is pd.NaT or (isinstance(v, float) and math.isnan(v))
        out.append(None if missing else v)
    return out


@pytest.mark.parametrize("case", COMPARED)
def test_run_gets_what_mltable_gives(
    case: str, received: dict[str, list[pd.DataFrame]], folders: dict[str, Path]
) -> None:
    batches = received[case]
    assert batches, f"{case}: run() got no mini-batch"
    lo = 0
    for k, got in enumerate(batches):
        if case.startswith("parquet"):
            want = parquet_file(folders[case], k)
        else:
            want = azure(folders[case], lo, len(got), whole=len(batches) == 1)
        where = f"{case}, mini-batch {k} (rows {lo}-{lo + len(got) - 1})"
        assert list(got.columns) == list(want.columns), where
        assert len(got) == len(want), where
        for column in got.columns:
            if (case, column) in KNOWN:
                continue
            assert str(got[column].dtype) == str(want[column].dtype), f"{where}, {column}"
            assert values(got[column]) == values(want[column]), f"{where}, {column}"
        lo += len(got)


def test_known_differences_are_still_differences(folders: dict[str, Path]) -> None:
    """Each KNOWN entry is a real difference in this mltable (drop it when mltable changes)."""
    whole = {case: azure(folders[case], 0, 0, whole=True) for case, _ in KNOWN}
    assert values(whole["csv_convert"]["zero_one"]) == [None] * 4
    assert values(whole["jsonl"]["f"]) == [0.5, None, 2.5, None]


def test_mltable_makes_values_that_do_not_fit_missing_where_parajob_refuses(
    folders: dict[str, Path],
) -> None:
    """csv_late: row 251 is 250.5 in a column inferred (first 200 rows) as int; mltable
    gives 250 and makes 'w' missing; jsonl_mixed: mltable keeps only numbers of the first
    value's type. parajob fails such a mini-batch naming the file and line instead."""
    late = azure(folders["csv_late"], 0, 0, whole=True)
    assert str(late["late"].dtype) == "int64" and late["late"].iloc[250] == 250
    assert late["late_s"].iloc[250:].isna().all()
    mixed = azure(folders["jsonl_mixed"], 0, 0, whole=True)
    assert values(mixed["m"]) == [1.0, None, None, None]


def test_mltable_infers_from_the_first_200_rows_of_the_whole_table(
    folders: dict[str, Path],
) -> None:
    """The finding parajob's sample follows: csv_files' x is 1, 2 in a.csv and 3.5 in b.csv:
    float64 even in the slice of a.csv alone."""
    assert str(azure(folders["csv_files"], 0, 2, whole=False)["x"].dtype) == "float64"


def test_mltable_slices_of_parquet_are_normalised_where_parajob_keeps_the_file_types(
    folders: dict[str, Path],
) -> None:
    """mltable reads a whole Parquet table with the file's types (int32, datetime64[us],
    dates as datetime.date), as parajob does for every mini-batch; a take/skip slice goes
    through its own value pipeline and gives int64, datetime64[ns] instead."""
    whole = azure(folders["parquet"], 0, 0, whole=True)
    assert [str(whole[c].dtype) for c in ("i32", "ts", "date")] == [
        "int32",
        "datetime64[us]",
        "object",
    ]
    sliced = azure(folders["parquet"], 2, 2, whole=False)
    assert [str(sliced[c].dtype) for c in ("i32", "ts", "date")] == [
        "int64",
        "datetime64[ns]",
        "datetime64[ns]",
    ]
