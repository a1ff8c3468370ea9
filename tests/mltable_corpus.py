"""A small corpus of MLTables for the dtype contract (test_dtypes.py, test_compat_mltable.py).

Plain Python and pyarrow only (no parajob import): the same module builds the corpus for
parajob and, in the compat test or a probe, for Azure's ``mltable`` package.

    CASES: name -> (MLTable text, {file name: bytes | pyarrow.Table})
    build(root) -> {name: folder}       one folder per case, each with its MLTable file
"""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

__all__ = ["CASES", "build"]

Files = dict[str, "bytes | pa.Table"]


def _delimited(paths: list[str], **options: object) -> str:
    opts = {"delimiter": "','", "header": "all_files_same_headers", **options}
    body = "\n".join(f"      {k}: {v}" for k, v in opts.items())
    files = "\n".join(f"  - file: ./{p}" for p in paths)
    return f"paths:\n{files}\ntransformations:\n  - read_delimited:\n{body}\n"


def _csv(header: str, rows: list[str]) -> bytes:
    return ("\n".join([header, *rows]) + "\n").encode()


HEADER = "i,f,b_lower,b_title,zero_one,d,dt,s,mixed,int_float"
ROWS = [
    "1,0.5,true,True,0,2024-01-02,2024-01-02 03:04:05,apple,1,1",
    "2,1.5,false,False,1,2024-02-03,2024-02-03 04:05:06,pear,a,2.5",
    "3,2.5,true,True,1,2024-03-04,2024-03-04 05:06:07,fig,2.5,3",
    "-4,3.0,false,False,0,2024-04-05,2024-04-05 06:07:08,kiwi,x,4",
]
# An empty cell in every column, in a different row each (and one row all empty but i).
EMPTY_ROWS = [
    "1,,true,True,0,2024-01-02,,apple,1,1",
    ",1.5,,False,1,,2024-02-03 04:05:06,,a,",
    "3,2.5,true,,,2024-03-04,2024-03-04 05:06:07,fig,,3",
    "4,,,,,,,,,",
]

JSONL = b"\n".join(
    [
        b'{"i": 1, "f": 0.5, "b": true, "s": "a", "n": 1, "d": "2024-01-02"}',
        b'{"i": 2, "f": 1, "b": false, "s": "b", "n": null, "d": "2024-01-03"}',
        b'{"i": 3, "f": 2.5, "b": null, "s": null, "n": 3, "d": null}',
        b'{"i": 4, "f": null, "b": true, "s": "", "d": "2024-01-05"}',
    ]
) + b"\n"

PARQUET = pa.table(
    {
        "i64": pa.array([1, 2, 3, 4], pa.int64()),
        "i64_null": pa.array([1, None, 3, 4], pa.int64()),
        "i32": pa.array([1, 2, 3, 4], pa.int32()),
        "i32_null": pa.array([None, 2, 3, 4], pa.int32()),
        "f64_null": pa.array([0.5, None, 2.5, 3.0], pa.float64()),
        "b": pa.array([True, False, True, False]),
        "b_null": pa.array([True, None, False, True]),
        "s_null": pa.array(["a", None, "", "d"]),
        "ts": pa.array([1_700_000_000_000_000, None, 1_700_000_001_000_000, 0], pa.timestamp("us")),
        "date": pa.array([19000, 19001, None, 19003], pa.date32()),
    }
)


def _parquet_mltable(paths: list[str]) -> str:
    files = "\n".join(f"  - file: ./{p}" for p in paths)
    return f"paths:\n{files}\ntransformations:\n  - read_parquet:\n      include_path_column: false\n"


def _late_rows() -> list[str]:
    """300 rows: 'late' is an int in the first 250 rows, then a float; 'late_s' turns text."""
    return [f"{k},{k if k < 250 else k + 0.5},{k if k < 250 else 'w'}" for k in range(300)]


CASES: dict[str, tuple[str, Files]] = {
    "csv_kinds": (_delimited(["data.csv"]), {"data.csv": _csv(HEADER, ROWS)}),
    "csv_empty": (_delimited(["data.csv"]), {"data.csv": _csv(HEADER, EMPTY_ROWS)}),
    "csv_no_infer": (
        _delimited(["data.csv"], infer_column_types="false"),
        {"data.csv": _csv(HEADER, EMPTY_ROWS)},
    ),
    "csv_empty_as_string": (
        _delimited(["data.csv"], empty_as_string="true"),
        {"data.csv": _csv(HEADER, [*ROWS, "5,,,,,,,,,"])},
    ),
    "csv_convert": (
        _delimited(["data.csv"])
        + "  - convert_column_types:\n"
        + "      - columns: [i, zero_one]\n        column_type: int\n"
        + "      - columns: f\n        column_type: float\n"
        + "      - columns: [b_lower]\n        column_type: boolean\n"
        + '      - columns: d\n        column_type:\n          datetime:\n            formats: ["%Y-%m-%d"]\n'
        + "      - columns: s\n        column_type: string\n",
        {"data.csv": _csv(HEADER, EMPTY_ROWS)},
    ),
    # Per file or per table: b.csv has an empty cell and a float where a.csv has ints.
    "csv_files": (
        _delimited(["a.csv", "b.csv"]),
        {
            "a.csv": _csv("x,y,z", ["1,0,a", "2,1,b"]),
            "b.csv": _csv("x,y,z", ["3.5,,c", ",1,"]),
        },
    ),
    "csv_late": (
        _delimited(["data.csv"]),
        {"data.csv": _csv("k,late,late_s", _late_rows())},
    ),
    "csv_no_header": (
        _delimited(["data.csv"], header="no_header"),
        {"data.csv": _csv("1,true,a", ["2,false,b"])},
    ),
    "csv_from_first_file": (
        _delimited(["a.csv", "b.csv"], header="from_first_file"),
        {"a.csv": _csv("x,y", ["1,0"]), "b.csv": _csv("2,1", ["3,0"])},
    ),
    "jsonl": (
        "paths:\n  - file: ./data.jsonl\ntransformations:\n  - read_json_lines:\n"
        "      encoding: utf8\n      invalid_lines: error\n",
        {"data.jsonl": JSONL},
    ),
    # A field that is a number in some lines and text or true in others.
    "jsonl_mixed": (
        "paths:\n  - file: ./data.jsonl\ntransformations:\n  - read_json_lines:\n"
        "      encoding: utf8\n      invalid_lines: error\n",
        {"data.jsonl": b'{"m": 1}\n{"m": "x"}\n{"m": 2.5}\n{"m": true}\n'},
    ),
    "parquet": (_parquet_mltable(["data.parquet"]), {"data.parquet": PARQUET}),
    "parquet_files": (
        _parquet_mltable(["a.parquet", "b.parquet"]),
        {"a.parquet": PARQUET.slice(0, 1), "b.parquet": PARQUET.slice(1)},
    ),
}


def build(root: Path) -> dict[str, Path]:
    """Write every case under root; returns name -> MLTable folder."""
    out = {}
    for name, (mltable, files) in CASES.items():
        folder = root / name
        folder.mkdir(parents=True, exist_ok=True)
        for file, data in files.items():
            if isinstance(data, pa.Table):
                pq.write_table(data, folder / file)
            else:
                (folder / file).write_bytes(data)
        (folder / "MLTable").write_text(mltable, encoding="utf-8")
        out[name] = folder
    return out
