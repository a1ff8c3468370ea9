"""Time from `parajob run` (process launch) to the first run() call, on a 10-file job.

Issue 13's target: under 0.3 s, with a trivial entry script and with one that imports
pandas. The peer is a plain multiprocessing.Pool script doing the same first call. Each
entry script writes the wall-clock time of its first run() to a file named after its
process; the earliest one, minus the launch time, is the latency. Medians of 5, printed
with the peers' table (bench/conftest.py); the job's output is checked, never its time.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from conftest import report

REPO = Path(__file__).resolve().parents[1]
RUNS = 5

SCRIPT = """\
{imports}import os
import time

def run(mini_batch):
    mark = os.environ["FIRST_RUN_MARK"] + "." + str(os.getpid())
    if not os.path.exists(mark):
        with open(mark, "w") as f:
            f.write(repr(time.time()))
    return [os.path.basename(p) for p in mini_batch]
"""

POOL = """\
import multiprocessing, os, sys
sys.path.insert(0, {src!r})
from entry import run

if __name__ == "__main__":
    files = sorted(os.path.join({data!r}, f) for f in os.listdir({data!r}))
    with multiprocessing.Pool(2) as pool:
        rows = [r for rows in pool.imap_unordered(run, [[f] for f in files]) for r in rows]
    print(len(rows))
"""

PIPELINE = """\
type: pipeline
jobs:
  step:
    type: parallel
    inputs:
      data: {type: uri_folder, path: ./data}
    outputs:
      out: {type: uri_file}
    input_data: ${{inputs.data}}
    mini_batch_size: "1"
    max_concurrency_per_instance: 2
    task:
      type: run_function
      code: ./src
      entry_script: entry.py
      append_row_to: ${{outputs.out}}
"""


def _job(folder: Path, imports: str) -> Path:
    (folder / "data").mkdir(parents=True)
    for i in range(10):
        (folder / "data" / f"f{i}.txt").write_text(f"{i}\n")
    (folder / "src").mkdir()
    (folder / "src" / "entry.py").write_text(SCRIPT.format(imports=imports))
    (folder / "pipeline.yml").write_text(PIPELINE)
    (folder / "pool.py").write_text(
        textwrap.dedent(POOL.format(src=str(folder / "src"), data=str(folder / "data")))
    )
    return folder


def _first_run_after_launch(folder: Path, argv: list[str], mark: Path) -> float:
    for old in mark.parent.glob(mark.name + ".*"):
        old.unlink()
    env = {**os.environ, "FIRST_RUN_MARK": str(mark), "PYTHONPATH": str(REPO / "python")}
    launched = time.time()
    proc = subprocess.run(argv, cwd=folder, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return min(float(p.read_text()) for p in mark.parent.glob(mark.name + ".*")) - launched


@pytest.mark.parametrize("imports", ["", "import pandas\n"], ids=["trivial", "pandas"])
def test_first_run_latency(tmp_path: Path, imports: str) -> None:
    folder = _job(tmp_path / "job", imports)
    mark = tmp_path / "first"
    parajob, pool = [], []
    for i in range(RUNS):  # interleaved: the machine's load hits both alike
        run_dir = folder / f"run{i}"
        argv = [sys.executable, "-m", "parajob", "run", "pipeline.yml", "--run-dir", str(run_dir)]
        parajob.append(_first_run_after_launch(folder, argv, mark))
        rows = (run_dir / "step" / "outputs" / "out").read_text().split()
        assert sorted(rows) == [f"f{i}.txt" for i in range(10)]
        pool.append(_first_run_after_launch(folder, [sys.executable, "pool.py"], mark))
    name = "pandas script" if imports else "trivial script"
    report(
        f"first run() after launch, 10 files, {name}: parajob "
        f"{statistics.median(parajob):.3f} s, Pool {statistics.median(pool):.3f} s "
        f"(medians of {RUNS}; target < 0.3 s)"
    )
