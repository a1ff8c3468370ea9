"""The C++ DataFrame row writer (runtime/frame_rows.py, csv_rows.hpp) against to_csv.

The oracle is the installed pandas' DataFrame.to_csv with the step's options (the floors
job runs this file on pandas 1.5.0): format_rows must give its bytes exactly, for random
frames of every supported dtype, odd floats, gaps, text that needs quotes, unicode, lone
surrogates and every separator settings.json may choose; and the writer must really be
used (not to_csv) for the frames and options it supports.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from parajob.runtime.frame_rows import frame_rows
from parajob.runtime.output import DEFAULT_CSV_OPTIONS, format_rows

INT_DTYPES = ["int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64"]
ODD_FLOATS = [
    0.0,
    -0.0,
    1e-05,
    1e-4,
    0.0001234,
    1e16,
    1e15,
    9999999999999998.0,
    1.5e16,
    123456789012345678.0,
    1e-300,
    5e-324,
    1.7976931348623157e308,
    math.inf,
    -math.inf,
    math.nan,
    0.1,
    1 / 3,
    2.5,
    100.0,
    -12345.678,
]
TEXTS = st.text(
    alphabet=st.sampled_from(list("ab ,;|\t\"'\n\r.-é€😀\u2028") + ["\udcff"]), max_size=6
)


def _to_csv(frame: pd.DataFrame, options: dict[str, Any]) -> bytes:
    text: str = frame.to_csv(**options)
    return text.encode("utf-8", "surrogateescape")


@st.composite
def columns(draw: st.DrawFn, n: int) -> Any:
    kind = draw(st.sampled_from(["int", "float", "bool", "text", "string", "nullable", "other"]))
    if kind == "int":
        dtype = np.dtype(draw(st.sampled_from(INT_DTYPES)))
        info = np.iinfo(dtype)
        values = draw(st.lists(st.integers(int(info.min), int(info.max)), min_size=n, max_size=n))
        return np.array(values, dtype=dtype)
    if kind == "float":
        floats = st.one_of(st.sampled_from(ODD_FLOATS), st.floats(allow_nan=True))
        return np.array(draw(st.lists(floats, min_size=n, max_size=n)), dtype=np.float64)
    if kind == "bool":
        return np.array(draw(st.lists(st.booleans(), min_size=n, max_size=n)), dtype=bool)
    if kind in ("text", "string"):
        values = draw(st.lists(st.one_of(TEXTS, st.none()), min_size=n, max_size=n))
        if kind == "string":
            surrogate_free = [v if v is None or "\udcff" not in v else "x" for v in values]
            return pd.array(surrogate_free, dtype="string")
        return pd.Series(values, dtype=object)  # object: pandas 3 would infer its str dtype
    if kind == "nullable":
        values = draw(
            st.lists(st.one_of(st.integers(-(2**40), 2**40), st.none()), min_size=n, max_size=n)
        )
        return pd.array(values, dtype="Int64")
    other = draw(st.sampled_from(["datetime", "category", "float32", "mixed"]))
    if other == "datetime":
        return pd.to_datetime(
            np.arange(n) * 86_400 * 10**9 + 12 * 3600 * 10**9 * draw(st.integers(0, 1))
        )
    if other == "category":
        return pd.Categorical(draw(st.lists(st.sampled_from(["x", "y"]), min_size=n, max_size=n)))
    if other == "float32":
        return np.arange(n, dtype=np.float32) / 3
    return np.array([1, "a", 2.5, None][:1] * n, dtype=object)


@st.composite
def frames(draw: st.DrawFn) -> pd.DataFrame:
    n = draw(st.integers(0, 6))
    width = draw(st.integers(1, 4))
    names = draw(
        st.lists(st.sampled_from(["a", "b", "c d", "e,f", "", "ü"]), min_size=width, max_size=width)
    )
    data = {f"_{k}": draw(columns(n)) for k in range(width)}
    frame = pd.DataFrame(
        {k: v.reset_index(drop=True) if isinstance(v, pd.Series) else v for k, v in data.items()}
    )
    frame.columns = names  # duplicates and labels that need quotes included
    return frame


OPTIONS = st.fixed_dictionaries(
    {
        "sep": st.sampled_from([" ", ",", "\t", ";", "|", ":"]),
        "header": st.booleans(),
        "index": st.just(False),
    },
    optional={"na_rep": st.sampled_from(["", "NA", "nan", " "])},
)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(frame=frames(), options=OPTIONS)
def test_format_rows_gives_to_csvs_bytes(frame: pd.DataFrame, options: dict[str, Any]) -> None:
    assert format_rows(frame, options) == _to_csv(frame, options)


@settings(max_examples=100, deadline=None)
@given(
    floats=st.lists(st.one_of(st.sampled_from(ODD_FLOATS), st.floats()), min_size=1, max_size=50)
)
def test_floats_are_numpys_shortest_text(floats: list[float]) -> None:
    frame = pd.DataFrame({"x": np.array(floats), "y": np.arange(len(floats))})
    fast = frame_rows(frame, DEFAULT_CSV_OPTIONS)
    assert fast is not None  # the writer, not to_csv
    assert fast == _to_csv(frame, DEFAULT_CSV_OPTIONS)


def test_the_scoring_result_is_written_by_the_writer() -> None:
    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"row_id": np.arange(10_000), "score": rng.normal(size=10_000) * 1e3})
    fast = frame_rows(frame, DEFAULT_CSV_OPTIONS)
    assert fast is not None
    assert fast == _to_csv(frame, DEFAULT_CSV_OPTIONS)


def test_a_one_row_partition_result_is_written_by_the_writer() -> None:
    frame = pd.DataFrame(
        {"store": [7], "brand": ["brand_07"], "slope": [-0.25], "promo": [1.5e-7], "n": [12]}
    )
    frame["brand"] = frame["brand"].astype("string")
    for options in (DEFAULT_CSV_OPTIONS, {"sep": ",", "header": True, "index": False}):
        fast = frame_rows(frame, options)
        assert fast is not None
        assert fast == _to_csv(frame, options)


@pytest.mark.parametrize(
    ("frame", "options"),
    [
        (pd.DataFrame({"a": [1.5]}), {**DEFAULT_CSV_OPTIONS, "float_format": "%.2f"}),
        (pd.DataFrame({"a": [1.5]}), {"sep": " ", "header": False}),  # index=True
        (pd.DataFrame({"a": ['say "hi"']}), DEFAULT_CSV_OPTIONS),
        (pd.DataFrame({"a": ["x y"]}), DEFAULT_CSV_OPTIONS),
        (pd.DataFrame({"a": [None]}, dtype=object), DEFAULT_CSV_OPTIONS),  # one empty field
        (pd.DataFrame({"a": pd.Series(["\udcff"], dtype=object)}), DEFAULT_CSV_OPTIONS),
        (pd.DataFrame({"a": pd.to_datetime(["2024-01-01"])}), DEFAULT_CSV_OPTIONS),
        (pd.DataFrame({"a": [1]}), {**DEFAULT_CSV_OPTIONS, "sep": "."}),
    ],
)
def test_what_the_writer_cannot_promise_goes_to_to_csv(
    frame: pd.DataFrame, options: dict[str, Any]
) -> None:
    assert frame_rows(frame, options) is None
    assert format_rows(frame, options) == _to_csv(frame, options)


def test_an_index_option_is_honoured_through_to_csv() -> None:
    frame = pd.DataFrame({"a": [1, 2]}, index=[5, 6])
    assert format_rows(frame, {"sep": ","}) == b",a\n5,1\n6,2\n"
