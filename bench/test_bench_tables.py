"""Planning the byte-size split of a ~1 GB CSV: parajob vs reading it with pandas / Arrow.

Run: PYTHONPATH=$PWD/python python -m pytest bench/test_bench_tables.py -p no:cacheprovider

parajob's plan is what the driver does before forking workers for a tabular MLTable with
``mini_batch_size: 1mb``: the C++ scan of the whole file (record boundaries, field counts
of every row: the ragged-row check), the header, a 200-row type sample, the pieces. The
peers read the same file into memory, which is what a runner that splits by rows after
loading would do (pandas.read_csv; pyarrow.csv.read_csv with all cores). Every timing is
of a warm page cache (the file is read once before). Driver memory is measured in a
fresh process: peak RSS after planning minus peak RSS after the imports.

The file is generated once (about 30 s) and cached under $TMPDIR.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import report
from pytest_benchmark.fixture import BenchmarkFixture

from parajob import _core
from parajob.data import plan_input
from parajob.spec.sizes import parse_mini_batch_size

TARGET_BYTES = 1 << 30
MLTABLE = """\
type: mltable
paths:
  - file: ./big.csv
transformations:
  - read_delimited: {delimiter: ',', header: all_files_same_headers}
"""
timings: dict[str, float] = {}


def generate(path: Path) -> int:
    """~1 GiB of iris-like rows with an id and a label; returns the row count."""
    rng = np.random.default_rng(0)
    labels = np.array(["Iris-setosa", "Iris-versicolor", "Iris-virginica"])
    rows, written = 0, 0
    with open(path, "w", encoding="ascii") as f:
        f.write("id,sepal_length,sepal_width,petal_length,petal_width,count,species\n")
        while written < TARGET_BYTES:
            n = 500_000
            v = rng.integers(10, 90, size=(n, 4)) / 10
            c = rng.integers(0, 100_000, size=n)
            lab = labels[rng.integers(0, 3, size=n)]
            chunk = "".join(
                f"{rows + i},{a},{b},{d},{e},{k},{s}\n"
                for i, (a, b, d, e), k, s in zip(
                    range(n), v.tolist(), c.tolist(), lab.tolist(), strict=True
                )
            )
            f.write(chunk)
            written += len(chunk)
            rows += n
    return rows


@pytest.fixture(scope="module")
def table() -> tuple[Path, int]:
    folder = Path(tempfile.gettempdir()) / "parajob-bench-tables-1g"
    marker = folder / "complete"
    if not marker.exists():
        folder.mkdir(parents=True, exist_ok=True)
        rows = generate(folder / "big.csv")
        (folder / "MLTable").write_text(MLTABLE, encoding="utf-8")
        marker.write_text(str(rows))
    with open(folder / "big.csv", "rb") as f:  # warm the page cache for every contender
        while f.read(1 << 24):
            pass
    return folder, int(marker.read_text())


def record(name: str, benchmark: BenchmarkFixture, run, rounds: int):  # type: ignore[no-untyped-def]
    result = benchmark.pedantic(run, rounds=rounds, iterations=1, warmup_rounds=0)
    if benchmark.stats is not None:
        timings[name] = benchmark.stats.stats.min
    return result


@pytest.mark.benchmark(group="split-1gb-csv")
def test_parajob_plan(benchmark: BenchmarkFixture, table: tuple[Path, int]) -> None:
    folder, rows = table
    size = parse_mini_batch_size("1mb")
    plan = record(
        "parajob plan (scan + checks)",
        benchmark,
        lambda: plan_input(folder, "mltable", size),
        rounds=5,
    )
    assert plan.n_items == rows
    expected = os.path.getsize(folder / "big.csv") / (1 << 20)
    assert plan.n_batches == pytest.approx(expected, rel=0.01)
    pieces = plan.pieces
    assert (pieces[1:, 1] == pieces[:-1, 2]).all()  # contiguous, whole file covered
    last = plan.materialise(plan.n_batches - 1)
    assert int(last["id"].iloc[-1]) == rows - 1


@pytest.mark.benchmark(group="split-1gb-csv")
@pytest.mark.parametrize("threads", [1, 0], ids=["threads=1", "threads=auto"])
def test_scan_only(benchmark: BenchmarkFixture, table: tuple[Path, int], threads: int) -> None:
    folder, rows = table
    scan = record(
        f"_core.scan_delimited(threads={threads or 'auto'})",
        benchmark,
        lambda: _core.scan_delimited(
            str(folder / "big.csv"), header=True, target_bytes=1 << 20, threads=threads
        ),
        rounds=5,
    )
    assert scan.records == rows and scan.error is None


@pytest.mark.benchmark(group="split-1gb-csv")
def test_pyarrow_read_csv(benchmark: BenchmarkFixture, table: tuple[Path, int]) -> None:
    import pyarrow.csv as pacsv

    folder, rows = table
    result = record(
        "pyarrow.csv.read_csv (all cores)",
        benchmark,
        lambda: pacsv.read_csv(folder / "big.csv"),
        rounds=2,
    )
    assert result.num_rows == rows


@pytest.mark.benchmark(group="split-1gb-csv")
def test_pandas_read_csv(benchmark: BenchmarkFixture, table: tuple[Path, int]) -> None:
    import pandas as pd

    folder, rows = table
    result = record("pandas.read_csv", benchmark, lambda: pd.read_csv(folder / "big.csv"), rounds=1)
    assert len(result) == rows


def test_driver_memory_while_planning(table: tuple[Path, int]) -> None:
    folder, _rows = table
    code = textwrap.dedent(f"""
        from pathlib import Path
        from parajob.data import plan_input
        from parajob.data import tables, delimited  # noqa: F401 - count imports in the base
        from parajob.spec.sizes import parse_mini_batch_size
        import pandas, pyarrow.csv  # noqa: F401

        def peak_kib():  # VmHWM: this process's peak RSS (ru_maxrss survives fork + exec)
            status = open("/proc/self/status").read().split("VmHWM:")[1]
            return int(status.split()[0])

        base = peak_kib()
        plan = plan_input(Path({str(folder)!r}), "mltable", parse_mini_batch_size("1mb"))
        print(base, peak_kib(), plan.n_batches)
    """)
    started = time.perf_counter()
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.split()
    base_kib, peak_kib = int(out[0]), int(out[1])
    size = os.path.getsize(folder / "big.csv")
    grew = (peak_kib - base_kib) * 1024
    report(
        f"driver memory planning a {size / 2**30:.2f} GiB CSV: peak RSS {peak_kib / 1024:.0f} "
        f"MiB ({base_kib / 1024:.0f} MiB after imports, +{grew / 2**20:.1f} MiB for the plan: "
        f"{grew / size:.2%} of the file); fresh process {time.perf_counter() - started:.2f} s"
    )
    assert grew < size / 50


def test_report_ratios(table: tuple[Path, int]) -> None:
    plan = timings.get("parajob plan (scan + checks)")
    if plan is None or "pandas.read_csv" not in timings:
        pytest.skip("benchmarks did not run (--benchmark-disable or deselected)")
    folder, rows = table
    size = os.path.getsize(folder / "big.csv")
    report(
        f"split of a {size / 2**30:.2f} GiB CSV ({rows:,} rows) by 1mb, {os.cpu_count()} CPUs, "
        f"warm cache, min of rounds:"
    )
    for name, seconds in timings.items():
        report(
            f"  {name}: {seconds:.3f} s ({size / seconds / 2**30:.2f} GiB/s), "
            f"{timings['pandas.read_csv'] / seconds:.1f}x pandas.read_csv"
        )
    assert timings["pandas.read_csv"] / plan >= 10
