"""End to end over tables: MLTable inputs through the CLI, DataFrame mini-batches, partitions."""

from __future__ import annotations

import csv
import textwrap
from pathlib import Path

import numpy as np
from conftest import JobRun, run_job

IRIS_MLTABLE = """\
type: mltable
paths:
  - file: ./iris.csv
transformations:
  - read_delimited:
      delimiter: ','
      encoding: ascii
      header: all_files_same_headers
"""

OJ_MLTABLE = """\
type: mltable
paths:
  - pattern: ./**/*.csv
transformations:
  - read_delimited:
      delimiter: ','
      encoding: ascii
      header: all_files_same_headers
      empty_as_string: false
      include_path_column: true
  - extract_columns_from_partition_format:
      partition_format: "{Store}/{Brand}/{file_name}.{extension}"
  - drop_columns: [Path, file_name, extension]
"""


def write_table_job(
    tmp: Path,
    mltable: str,
    files: dict[str, str],
    script: str,
    *,
    mini_batch_size: str | None = "10kb",
    extra_step: str = "",
    append_row: bool = True,
    concurrency: int = 2,
) -> Path:
    """A one-step pipeline `step` over an MLTable folder ./data (mode: direct)."""
    data = tmp / "data"
    data.mkdir(parents=True, exist_ok=True)
    (data / "MLTable").write_text(mltable, encoding="utf-8")
    for name, text in files.items():
        (data / name).parent.mkdir(parents=True, exist_ok=True)
        (data / name).write_text(text, encoding="utf-8")
    (tmp / "src").mkdir(exist_ok=True)
    (tmp / "src" / "entry.py").write_text(textwrap.dedent(script), encoding="utf-8")
    size = f'    mini_batch_size: "{mini_batch_size}"\n' if mini_batch_size else ""
    append = "      append_row_to: ${{outputs.out}}\n" if append_row else ""
    pipeline = f"""\
type: pipeline
jobs:
  step:
    type: parallel
    inputs:
      data: {{type: mltable, path: ./data, mode: direct}}
    outputs:
      out: {{type: uri_file}}
    input_data: ${{{{inputs.data}}}}
{size}    max_concurrency_per_instance: {concurrency}
{textwrap.indent(textwrap.dedent(extra_step), "    ")}    task:
      type: run_function
      code: ./src
      entry_script: entry.py
{append}"""
    path = tmp / "pipeline.yml"
    path.write_text(pipeline, encoding="utf-8")
    return path


def attempts(result: JobRun) -> list[dict[str, str]]:
    path = result.step_dir() / "logs" / "sys" / "job_report" / "processed_mini-batches.csv"
    return list(csv.DictReader(path.open()))


def iris_rows(n: int) -> list[str]:
    rng = np.random.default_rng(7)
    kinds = ["Iris-setosa", "Iris-versicolor", "Iris-virginica"]
    return [
        f"{rng.integers(40, 80) / 10},{rng.integers(20, 45) / 10},{i},{kinds[i % 3]}"
        for i in range(n)
    ]


def test_iris_by_10kb_writes_every_row_once_in_order(tmp_path: Path) -> None:
    rows = iris_rows(3000)
    script = """
    import pandas as pd

    TEXT = str(pd.Series(["a"]).dtype)  # object; str on pandas 3

    def run(mini_batch):
        assert isinstance(mini_batch, pd.DataFrame)
        assert list(mini_batch.index) == list(range(len(mini_batch)))
        assert [str(t) for t in mini_batch.dtypes] == ["float64", "float64", "int64", TEXT]
        return mini_batch
    """
    write_table_job(
        tmp_path,
        IRIS_MLTABLE,
        {"iris.csv": "sepal_length,sepal_width,n,species\n" + "\n".join(rows) + "\n"},
        script,
    )
    result = run_job(tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.output().splitlines() == [r.replace(",", " ") for r in rows]
    size = (tmp_path / "data" / "iris.csv").stat().st_size
    assert len(attempts(result)) == len({a["index"] for a in attempts(result)}) >= size // 10240
    assert "3000 in, 3000 returned, 0 failed" in result.job_result()


Groups = dict[tuple[str, str], list[str]]


def oj_files(stores: range, brands: tuple[str, ...]) -> tuple[dict[str, str], Groups]:
    """Orange-juice-like sales: one CSV per store and brand, 20 to 60 weeks each."""
    rng = np.random.default_rng(11)
    files, groups = {}, {}
    for store in stores:
        for brand in brands:
            weeks = sorted(rng.choice(np.arange(40, 160), rng.integers(20, 60), replace=False))
            lines = [f"{w},{rng.integers(1000, 90000)},{rng.random():.3f}" for w in weeks]
            files[f"{store}/{brand}/data_{store}_{brand}.csv"] = (
                "WeekStarting,Quantity,Price\n" + "\n".join(lines) + "\n"
            )
            groups[(str(store), brand)] = lines
    return files, groups


PARTITIONED_STEP = """\
partition_keys: [Store, Brand]
mini_batch_error_threshold: 5
error_threshold: -1
"""


def test_partitioned_job_runs_once_per_group_with_exactly_its_rows(tmp_path: Path) -> None:
    files, groups = oj_files(range(1000, 1033), ("dominicks", "minute.maid", "tropicana"))
    assert len(groups) == 99 and sum(len(v) for v in groups.values()) > 3000
    script = """
    def run(mini_batch, mini_batch_context):
        key = mini_batch_context.partition_key_value
        assert set(mini_batch["Store"]) == {key["Store"]}
        assert set(mini_batch["Brand"]) == {key["Brand"]}
        return [f"{key['Store']}|{key['Brand']}|{mini_batch_context.minibatch_index}|"
                f"{w},{q},{p:.3f}" for w, q, p in zip(mini_batch["WeekStarting"],
                mini_batch["Quantity"], mini_batch["Price"])]
    """
    write_table_job(
        tmp_path, OJ_MLTABLE, files, script, mini_batch_size=None, extra_step=PARTITIONED_STEP
    )
    result = run_job(tmp_path)
    assert result.returncode == 0, result.stderr
    seen: dict[tuple[str, str], list[str]] = {}
    batch_of: dict[tuple[str, str], set[str]] = {}
    for line in result.output().splitlines():
        store, brand, batch, row = line.split("|")
        seen.setdefault((store, brand), []).append(row)
        batch_of.setdefault((store, brand), set()).add(batch)
    assert seen == groups
    assert all(len(b) == 1 for b in batch_of.values())
    assert len(attempts(result)) == 99


def test_partitioned_job_returning_nothing_succeeds_when_errors_are_ignored(tmp_path: Path) -> None:
    files, _groups = oj_files(range(1, 35), ("a", "b", "c"))
    script = """
    def run(mini_batch, mini_batch_context):
        assert len(mini_batch) > 0
        return []
    """
    write_table_job(
        tmp_path,
        OJ_MLTABLE,
        files,
        script,
        mini_batch_size=None,
        extra_step=PARTITIONED_STEP,
        append_row=False,
    )
    result = run_job(tmp_path)
    assert result.returncode == 0, result.stderr + result.stdout
    assert "SUCCEEDED" in result.job_result() and len(attempts(result)) == 102


def test_partition_keys_on_a_data_column(tmp_path: Path) -> None:
    rows = [f"{i % 7},{i}" for i in range(2000)]
    script = """
    def run(mini_batch, context):
        return [f"{context.partition_key_value['k']}:{len(mini_batch)}:{mini_batch['v'].iloc[0]}"]
    """
    write_table_job(
        tmp_path,
        IRIS_MLTABLE,
        {"iris.csv": "k,v\n" + "\n".join(rows)},
        script,
        mini_batch_size=None,
        extra_step="partition_keys: [k]\n",
    )
    result = run_job(tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.output().splitlines() == [f"{k}:{len(range(k, 2000, 7))}:{k}" for k in range(7)]


# -- bad input: exit code 2, a clear message, no worker started ---------------------------


def failed_before_workers(result: JobRun) -> str:
    assert result.returncode == 2, result.stdout + result.stderr
    assert not (result.step_dir() / "logs" / "user").exists()
    return result.stderr


def test_malformed_mltable(tmp_path: Path) -> None:
    mltable = (
        "paths:\n  - file: ./iris.csv\ntransformations:\n  - read_delimited:\n      header: [oops\n"
    )
    write_table_job(tmp_path, mltable, {"iris.csv": "a\n1\n"}, "def run(b):\n    return b\n")
    err = failed_before_workers(run_job(tmp_path))
    assert "MLTable:" in err and "invalid YAML" in err


def test_unknown_transformation(tmp_path: Path) -> None:
    mltable = IRIS_MLTABLE + "  - drop_column: [a]\n"
    write_table_job(tmp_path, mltable, {"iris.csv": "a,b\n1,2\n"}, "def run(b):\n    return b\n")
    err = failed_before_workers(run_job(tmp_path))
    assert "MLTable:9:5: error: transformations[1].drop_column: unknown transformation" in err
    assert "did you mean 'drop_columns'?" in err


def test_partition_key_that_is_not_a_column(tmp_path: Path) -> None:
    files, _ = oj_files(range(1, 3), ("a",))
    write_table_job(
        tmp_path,
        OJ_MLTABLE,
        files,
        "def run(b, c):\n    return []\n",
        mini_batch_size=None,
        extra_step="partition_keys: [Store, Brnad]\n",
    )
    err = failed_before_workers(run_job(tmp_path))
    assert "pipeline.yml:" in err and "jobs.step.partition_keys" in err
    assert "partition key 'Brnad' is not a column" in err


def test_ragged_csv_row(tmp_path: Path) -> None:
    rows = iris_rows(500)
    rows[321] += ",extra"
    write_table_job(
        tmp_path,
        IRIS_MLTABLE,
        {"iris.csv": "a,b,n,s\n" + "\n".join(rows) + "\n"},
        "def run(b):\n    return b\n",
    )
    err = failed_before_workers(run_job(tmp_path))
    assert "iris.csv:323: error: ragged row: expected 4 fields (as in the header), found 5" in err
