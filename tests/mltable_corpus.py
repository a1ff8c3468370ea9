"""A small corpus of MLTables for the dtype contract (test_dtypes.py, test_compat_mltable.py).

No parajob import: the same module builds the corpus for parajob and, in the compat test
or a probe, for Azure's ``mltable`` package.

    CASES: name -> (MLTable text, {file name: bytes | pyarrow.Table})
    BATCH_SIZES: name -> mini_batch_size where not one mini-batch per file
    REFUSED: cases parajob refuses (a value that does not fit its column)
    build(root) -> {name: folder}       one folder per case, each with its MLTable file
    received_frames(root, names)        what run() receives in a real parajob run
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

__all__ = ["BATCH_SIZES", "CASES", "REFUSED", "build", "received_frames"]

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

JSONL = (
    b"\n".join(
        [
            b'{"i": 1, "f": 0.5, "b": true, "s": "a", "n": 1, "d": "2024-01-02"}',
            b'{"i": 2, "f": 1, "b": false, "s": "b", "n": null, "d": "2024-01-03"}',
            b'{"i": 3, "f": 2.5, "b": null, "s": null, "n": 3, "d": null}',
            b'{"i": 4, "f": null, "b": true, "s": "", "d": "2024-01-05"}',
        ]
    )
    + b"\n"
)

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
    return (
        f"paths:\n{files}\ntransformations:\n  - read_parquet:\n      include_path_column: false\n"
    )


def _batch_rows() -> list[str]:
    """2000 rows; n has a gap every 97th row, flag (0/1) every 301st: some mini-batches
    of 2 KiB hold a gap, most do not."""
    return [
        f"{k},{'' if k % 97 == 50 else k * 3},{'' if k % 301 == 7 else k % 2},s{k},"
        f"2024-01-{1 + k % 28:02d}"
        for k in range(2000)
    ]


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
        + "      - columns: d\n        column_type:\n"
        + '          datetime:\n            formats: ["%Y-%m-%d"]\n'
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
    "csv_batches": (
        _delimited(["data.csv"]),
        {"data.csv": _csv("k,n,flag,s,d", _batch_rows())},
    ),
    # Upper-case booleans, 1.0/0.0 (floats), yes/no and times of day (text).
    "csv_more": (
        _delimited(["data.csv"]),
        {"data.csv": _csv("u,f,flag,yn,t", ["TRUE,1.0,1,yes,12:30", "FALSE,0.0,0,no,13:00"])},
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
    # JSON 0/1 numbers stay integers.
    "jsonl_flags": (
        "paths:\n  - file: ./data.jsonl\ntransformations:\n  - read_json_lines:\n"
        "      encoding: utf8\n",
        {"data.jsonl": b'{"z": 0, "w": 1}\n{"z": 1, "w": 1}\n'},
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


# mini_batch_size per case (default: one mini-batch per file).
BATCH_SIZES = {"csv_batches": "2kb"}
# Cases where parajob refuses a value that mltable silently makes missing.
REFUSED = {"csv_late", "jsonl_mixed"}


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


def received_frames(root: Path, names: list[str]) -> dict[str, list[pd.DataFrame]]:
    """Run the named cases (built under root/corpus) as one parajob pipeline, a step per
    case whose run() pickles the DataFrame it receives; returns name -> mini-batches in
    order. Raises AssertionError with parajob's output if the run fails."""
    folders = build(root / "corpus")
    jobs = []
    for name in names:
        out = root / "received" / name
        out.mkdir(parents=True)
        code = root / "src" / name
        code.mkdir(parents=True)
        (code / "entry.py").write_text(_PICKLER.format(out=str(out)), encoding="utf-8")
        jobs.append(
            f"  {name}:\n    type: parallel\n"
            f"    inputs:\n      data: {{type: mltable, path: {folders[name]}, mode: direct}}\n"
            "    input_data: ${{inputs.data}}\n"
            f'    mini_batch_size: "{BATCH_SIZES.get(name, "1gb")}"\n'
            "    max_concurrency_per_instance: 2\n"
            f"    task:\n      type: run_function\n      code: {code}\n"
            "      entry_script: entry.py\n"
        )
    pipeline = root / "pipeline.yml"
    pipeline.write_text("type: pipeline\njobs:\n" + "".join(jobs), encoding="utf-8")
    proc = subprocess.run(
        [sys.executable, "-m", "parajob", "run", str(pipeline), "--run-dir", str(root / "run")],
        cwd=root,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    frames = {}
    for name in names:
        files = sorted((root / "received" / name).glob("*.pkl"))
        frames[name] = [pd.read_pickle(f) for f in files]
    return frames


_PICKLER = """\
import os
import pickle

OUT = {out!r}


def run(mini_batch, mini_batch_context):
    path = os.path.join(OUT, "%05d.pkl" % mini_batch_context.minibatch_index)
    with open(path, "wb") as f:
        pickle.dump(mini_batch, f)
    return mini_batch
"""
