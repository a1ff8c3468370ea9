"""append_row's text of a DataFrame without DataFrame.to_csv: the C++ row writer
(docs/design.md §4.7, docs/contract.md §5.1).

    run() -> DataFrame --_options: the step's to_csv options it can honour, else None
        --_columns: its blocks as 1-d numpy arrays + one kind letter each, else None
        --_core.format_csv_rows (csv_rows.hpp)--> bytes, or None
    None anywhere: the caller (output.format_rows) calls to_csv, as before

Why: to_csv is 80% of a table worker's CPU on a scoring job (issue 13: 4.4 s of 5.6 s for
2,001,000 rows, then 0.26 ms for each one-row DataFrame of a partition job); the writer
does the same rows in ~1/20 of the time, and ~5 us of Python per call.

Invariant: the bytes are exactly to_csv's (encoded as format_rows encodes them) or None.
Supported: numpy int8..int64, uint8..uint64, float64, bool; object columns of str/None/NaN;
pandas' string dtypes; nullable integer/boolean/float columns without a missing value;
options sep (one ASCII character that no number or True/False/inf/nan can hold), na_rep
(text without the separator, '"' or a line break), header (str labels), index False.
Everything else — float_format, quoting, date columns, categoricals, MultiIndex labels, an
unknown option — goes to to_csv. The oracle is the installed pandas: tests/test_fast_rows.py
compares the two on random frames.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from parajob import _core

__all__ = ["frame_rows"]

_OPTIONS = frozenset({"sep", "header", "index", "na_rep"})
_NUMPY_KINDS = {
    ("i", 1): "b",
    ("i", 2): "h",
    ("i", 4): "i",
    ("i", 8): "q",
    ("u", 1): "B",
    ("u", 2): "H",
    ("u", 4): "I",
    ("u", 8): "Q",
    ("f", 8): "d",
    ("b", 1): "?",
    ("O", 8): "O",
}
_SPECIAL = ('"', "\n", "\r")


def frame_rows(frame: Any, options: dict[str, Any]) -> bytes | None:
    """The rows of ``frame`` as ``frame.to_csv(**options)`` gives them (UTF-8), or None
    when that cannot be promised here (the caller then calls to_csv). Never raises for a
    frame or an option it does not support; leaves the frame unchanged."""
    chosen = _options(options)
    if chosen is None:
        return None
    sep, na_rep, header = chosen
    try:
        columns = _columns(frame)
    except (AttributeError, TypeError, ValueError):  # a pandas whose internals differ
        return None
    if columns is None:
        return None
    arrays, kinds = columns
    head = _header(frame, sep) if header else b""
    if head is None:
        return None
    rows = _core.format_csv_rows(arrays, kinds, len(frame), sep, na_rep)
    return None if rows is None else head + rows


_last_options: tuple[dict[str, Any], dict[str, Any], tuple[str, str, bool] | None] | None = None


def _options(options: dict[str, Any]) -> tuple[str, str, bool] | None:
    """(sep, na_rep, header) when every option is one this writer honours, else None.
    A worker passes the same dict on every call: its answer is kept (with a copy, so an
    options dict changed in place is looked at again)."""
    global _last_options
    last = _last_options
    if last is not None and last[0] is options and last[1] == options:
        return last[2]
    chosen = _check_options(options)
    _last_options = (options, dict(options), chosen)
    return chosen


def _check_options(options: dict[str, Any]) -> tuple[str, str, bool] | None:
    if not options.keys() <= _OPTIONS or options.get("index", True) is not False:
        return None
    sep = options.get("sep", ",")
    na_rep = options.get("na_rep", "")
    header = options.get("header", True)
    if (
        type(sep) is not str
        or len(sep) != 1
        or not sep.isascii()
        or sep.isalnum()  # digits and the letters of True, False, inf, e-notation
        or sep in '.+-"\n\r'
        or type(na_rep) is not str
        or any(c in na_rep for c in (sep, *_SPECIAL))
        or type(header) is not bool
    ):
        return None
    return sep, na_rep, header


def _columns(frame: Any) -> tuple[list[np.ndarray], str] | None:
    """The frame's columns in order, each a 1-d array the writer reads, and their kinds.

    Read from the blocks (pandas' BlockManager, the same from 1.5 to 3.x): the public way,
    one Series per column, costs ~40 us a column, which is the whole budget of a one-row
    partition result. Any surprise there raises AttributeError/TypeError/ValueError, and
    the caller uses to_csv."""
    n_cols = len(frame.columns)
    if n_cols == 0:
        return None
    arrays: list[Any] = [None] * n_cols
    kinds = [""] * n_cols
    for block in frame._mgr.blocks:
        values = block.values
        if isinstance(values, np.ndarray):  # (columns, rows), one dtype: one kind per block
            columns = list(values) if values.ndim == 2 else [values]
        else:
            column = _extension_values(values)
            if column is None:
                return None
            columns = [column]
        dtype = columns[0].dtype if columns else values.dtype
        kind = _NUMPY_KINDS.get((dtype.kind, dtype.itemsize))
        if kind is None or not dtype.isnative:
            return None
        for position, column in zip(block.mgr_locs.as_array.tolist(), columns, strict=True):
            arrays[position], kinds[position] = column, kind
    if any(a is None for a in arrays):
        return None
    return arrays, "".join(kinds)


def _extension_values(values: Any) -> np.ndarray | None:
    """A pandas extension array as numpy: text as objects with None for a gap; nullable
    numbers and booleans only without a gap (to_csv writes na_rep there, numpy cannot
    hold it); anything else (categorical, datetimes, intervals, Arrow-backed) None."""
    name = type(values).__name__
    if name in ("ArrowStringArray", "ArrowStringArrayNumpySemantics"):
        # Arrow's own conversion (str objects, None for a gap) takes ~1 us; pandas'
        # to_numpy(dtype=object, na_value=None) ~10 us, most of a one-row result's budget.
        chunks = getattr(values, "_pa_array", None)  # pandas >= 2.1; 1.5 names it _data
        if chunks is None:
            chunks = values._data
        text: np.ndarray = chunks.to_numpy()
        return text
    if name == "StringArray":  # pandas' own storage: objects with pd.NA for a gap
        result: np.ndarray = values.to_numpy(dtype=object, na_value=None)
        return result
    if name in ("IntegerArray", "FloatingArray", "BooleanArray") and not values._hasna:
        numbers: np.ndarray = values.to_numpy(dtype=values.dtype.numpy_dtype)
        return numbers
    return None


def _header(frame: Any, sep: str) -> bytes | None:
    labels = list(frame.columns)
    if not all(type(label) is str for label in labels):
        return None
    if any(c in label for label in labels for c in (sep, *_SPECIAL)):
        return None
    if labels == [""]:  # one empty field: the csv module writes '""'
        return None
    return (sep.join(labels) + "\n").encode("utf-8", "surrogateescape")
