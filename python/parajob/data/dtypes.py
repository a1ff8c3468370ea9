"""The one owner of table column types: inferred Arrow types -> fixed types -> pandas dtypes.

    sample (first SAMPLE_ROWS rows of the table) --Arrow inference--> raw types
        --settle_delimited / settle_json--> the column types every piece is read with
    mini-batch (Arrow, that schema) --to_pandas--> the DataFrame run() receives

The target is what Azure's ``mltable`` ``to_pandas_dataframe()`` gives for the same rows
(established by tests/test_compat_mltable.py against mltable 1.7):

- CSV: types are inferred once, from the first 200 rows of the whole table (the sample
  runs on into the next files), and fixed for every row; a column whose sample holds only
  0 and 1 is boolean; dates and datetimes are ``datetime64[ns]``, times of day text;
  with ``empty_as_string`` an empty cell is text, so a column with one in the sample is
  text.
- JSON lines: JSON's own types; text stays text (no date guessing).
- pandas: numpy dtypes as pyarrow gives them by default, per mini-batch. An integer
  column is ``int64`` (Parquet ``int32`` stays ``int32``), and ``float64`` with NaN in a
  mini-batch that holds a missing value; a boolean column is ``bool``, and ``object``
  (True/False/None) in a mini-batch with a missing value; text is ``object`` with None
  (pandas 3: its ``str`` dtype); datetimes are ``datetime64`` with NaT; Parquet dates are
  ``object`` holding ``datetime.date``. mltable converts each slice the same way, so on
  Azure too an integer column's dtype depends on whether the mini-batch holds a gap.

Invariants: the Arrow schema is the same for every mini-batch (only the pandas dtype of
an integer or boolean column may change with the batch's gaps, as with mltable); no
per-row Python anywhere (the 0/1 check runs vectorised on the 200-row sample).
"""

from __future__ import annotations

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

__all__ = ["TEXT_DATETIME", "settle_delimited", "settle_json", "to_pandas", "zero_one_columns"]

# Datetimes parsed from text (CSV cells, convert_column_types, partition formats): mltable
# gives nanoseconds.
TEXT_DATETIME = pa.timestamp("ns")


def settle_delimited(kind: pa.DataType) -> pa.DataType:
    """An inferred CSV type that later rows can still fit: null -> string (a column empty
    in the sample), date/timestamp -> TEXT_DATETIME; a time of day (12:30) stays text, as
    in mltable."""
    if pa.types.is_null(kind) or pa.types.is_time(kind):
        return pa.string()
    if pa.types.is_date(kind) or pa.types.is_timestamp(kind):
        return TEXT_DATETIME
    return kind


def settle_json(kind: pa.DataType) -> pa.DataType:
    """An inferred JSON type: null -> string; a timestamp Arrow guessed from text stays
    text (mltable keeps JSON strings as strings)."""
    if pa.types.is_null(kind) or pa.types.is_timestamp(kind) or pa.types.is_date(kind):
        return pa.string()
    return kind


def zero_one_columns(sample: pa.Table) -> list[str]:
    """Integer columns of the sample whose values are all 0 or 1 (at least one value):
    mltable infers those as booleans."""
    names = []
    for fld, column in zip(sample.schema, sample.columns, strict=True):
        if not pa.types.is_integer(fld.type) or column.null_count == len(column):
            continue
        bounds = pc.min_max(column).as_py()
        if bounds["min"] >= 0 and bounds["max"] <= 1:
            names.append(fld.name)
    return names


def to_pandas(table: pa.Table) -> pd.DataFrame:
    """The DataFrame run() receives: pyarrow's default numpy dtypes, a fresh RangeIndex."""
    # One thread: workers already run in parallel, and a ~1 MB mini-batch converts faster
    # than a pool wakes up (each worker would otherwise start a pool of one thread per CPU).
    frame: pd.DataFrame = table.to_pandas(ignore_metadata=True, use_threads=False)
    return frame
