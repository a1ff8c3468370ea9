"""What a run() returned: counting its items and formatting them for append_row
(docs/contract.md §4.1, §5.1)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from parajob.runtime.frame_rows import frame_rows

SETTINGS_FILE = "parallel_run_step.settings.json"
DEFAULT_CSV_OPTIONS: dict[str, Any] = {"sep": " ", "header": False, "index": False}


def is_dataframe(value: object) -> bool:
    # Checked by name so that workers of file jobs never import pandas (about 0.3 s each).
    cls = type(value)
    return cls.__name__ == "DataFrame" and cls.__module__.startswith("pandas")


def count_items(result: object) -> int | None:
    """Items in a run() result, or None when its type is not allowed (docs/contract.md §4.1)."""
    if type(result) is list or isinstance(result, (list, tuple)) or is_dataframe(result):
        return len(result)  # type: ignore[arg-type]
    return None


def format_rows(result: Any, csv_options: dict[str, Any]) -> bytes:
    """append_row text of one mini-batch: str(item) per line, or DataFrame rows as CSV.

    Encoded as UTF-8 with ``surrogateescape``: a file name that is not UTF-8 reaches run()
    as ``os.fsdecode`` gives it (lone surrogates for its odd bytes), and a row that names it
    gets the file's own bytes back, so the row still names that file (docs/contract.md
    §5.1, issue 8). A DataFrame goes through the C++ row writer (frame_rows.py), which
    gives exactly to_csv's bytes where it supports the columns and options, else to_csv.
    """
    if type(result) is list and len(result) == 1:  # the one-file mini-batch fast path
        return (str(result[0]) + "\n").encode("utf-8", "surrogateescape")
    if is_dataframe(result):
        fast = frame_rows(result, csv_options)  # the C++ writer: to_csv's bytes, or None
        if fast is not None:
            return fast
        text: str = result.to_csv(**csv_options)
        return text.encode("utf-8", "surrogateescape")
    if not result:
        return b""
    return ("\n".join(map(str, result)) + "\n").encode("utf-8", "surrogateescape")


def load_csv_options(code_dir: Path) -> dict[str, Any]:
    """DataFrame output options, overridden by parallel_run_step.settings.json in task.code.

    Raises ValueError with the file name when the settings file is not valid JSON of the
    expected shape ({"append_row": {"pandas.DataFrame.to_csv": {...}}}).
    """
    options = dict(DEFAULT_CSV_OPTIONS)
    path = code_dir / SETTINGS_FILE
    if not path.is_file():
        return options
    try:
        settings = json.loads(path.read_text(encoding="utf-8"))
        overrides = settings.get("append_row", {}).get("pandas.DataFrame.to_csv", {})
    except (json.JSONDecodeError, AttributeError) as exc:
        raise ValueError(
            f"{path}: expected JSON like "
            '{"append_row": {"pandas.DataFrame.to_csv": {"sep": ","}}}'
            f"; could not read it: {exc}"
        ) from exc
    if not isinstance(overrides, dict):
        raise ValueError(f"{path}: append_row.pandas.DataFrame.to_csv must be an object")
    options.update(overrides)
    return options
