"""A table job's append_row output through the C++ row writer, end to end (issue 13).

The workers write a DataFrame result with the writer (runtime/frame_rows.py) and call
DataFrame.to_csv only for what it cannot promise. The entry script below watches for
to_csv calls (it wraps the method in init(), as user code may) and keeps, for each
mini-batch, the bytes the real to_csv gives for its result: the job's output must be
exactly those bytes in mini-batch order, and to_csv must have run only for the results
with text that needs quotes.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from conftest import run_job
from test_table_jobs import write_table_job

MLTABLE = """\
type: mltable
paths:
  - file: ./t.csv
transformations:
  - read_delimited: {delimiter: ',', header: all_files_same_headers}
"""

FLOATS = ["1e-05", "1e+16", "-0.0", "", "0.1", "123456.789", "2.5e-300", "inf", "7"]

# A mini-batch whose first id is divisible by 3 returns text that needs quotes.
SCRIPT = """
import os
from pathlib import Path
from typing import Any

import pandas as pd

HERE = Path(__file__).parent
original = pd.DataFrame.to_csv


def init():
    def watched(self, *args, **kwargs):
        with open(HERE / f"to_csv-{os.getpid()}.txt", "a") as f:
            f.write(f"{self['id'].iloc[0]}\\n")
        return original(self, *args, **kwargs)

    pd.DataFrame.to_csv = watched


def run(df):
    first = int(df["id"].iloc[0])
    quoted = first % 3 == 0
    out = pd.DataFrame(
        {
            "id": df["id"],
            "twice": df["x"] * 2,
            "name": df["name"] + (' "q"' if quoted else "_ü"),
            "flag": df["flag"],
        }
    )
    (HERE / f"expected-{first:06d}.bin").write_bytes(
        original(out, **OPTIONS).encode("utf-8", "surrogateescape")
    )
    if quoted:
        (HERE / f"quoted-{first:06d}").touch()
    return out
"""


def _table(rows: int) -> str:
    lines = ["id,x,name,flag"]
    for i in range(rows):
        lines.append(f"{i},{FLOATS[i % len(FLOATS)]},n{i % 17},{i % 2}")
    return "\n".join(lines) + "\n"


def _job(tmp: Path, options: dict[str, object]) -> Path:
    script = SCRIPT.replace("**OPTIONS", "**" + repr(options))
    pipeline = write_table_job(tmp, MLTABLE, {"t.csv": _table(3000)}, script, mini_batch_size="2kb")
    return pipeline


def _check(tmp: Path) -> None:
    result = run_job(tmp)
    assert result.returncode == 0, result.stderr
    src = tmp / "src"
    expected = b"".join(p.read_bytes() for p in sorted(src.glob("expected-*.bin")))
    assert len(list(src.glob("expected-*.bin"))) > 10  # many mini-batches, both kinds
    out = (result.step_dir() / "outputs" / "out").read_bytes()
    assert out == expected
    called = sorted(int(line) for p in src.glob("to_csv-*.txt") for line in p.read_text().split())
    quoted = sorted(int(p.name.removeprefix("quoted-")) for p in src.glob("quoted-*"))
    assert quoted and called == quoted  # to_csv only where quotes are needed


def test_scoring_rows_are_to_csvs_bytes_without_to_csv(tmp_path: Path) -> None:
    _check(_job(tmp_path, {"sep": " ", "header": False, "index": False}).parent)


def test_settings_json_separator_and_header_are_honoured(tmp_path: Path) -> None:
    _job(tmp_path, {"sep": "\t", "header": True, "index": False})  # the oracle's options
    settings = {"append_row": {"pandas.DataFrame.to_csv": {"sep": "\t", "header": True}}}
    (tmp_path / "src" / "parallel_run_step.settings.json").write_text(json.dumps(settings))
    _check(tmp_path)


PARQUET_MLTABLE = """\
type: mltable
paths:
  - file: ./t.parquet
transformations:
  - read_parquet: {}
"""


def test_a_parquet_worker_parses_a_files_footer_once(tmp_path: Path, monkeypatch: Any) -> None:
    import pandas as pd
    import pyarrow.parquet as pq

    from parajob.data.mltable import load_mltable
    from parajob.data.tables import plan_table_batches

    frame = pd.DataFrame({"id": range(1000), "x": [i / 7 for i in range(1000)]})
    frame.to_parquet(tmp_path / "t.parquet", row_group_size=100)
    (tmp_path / "MLTable").write_text(PARQUET_MLTABLE, encoding="utf-8")
    plan = plan_table_batches(load_mltable(tmp_path), 1)  # one row group per mini-batch
    opened = []
    real = pq.ParquetFile

    def counting(*args: Any, **kwargs: Any) -> Any:
        opened.append(args[0])
        return real(*args, **kwargs)

    monkeypatch.setattr(pq, "ParquetFile", counting)
    batches = [plan.materialise(b) for b in range(plan.n_batches)]
    assert plan.n_batches == 10 and len(opened) == 1
    pd.testing.assert_frame_equal(pd.concat(batches, ignore_index=True), frame)
