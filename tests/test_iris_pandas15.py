"""The public iris batch-prediction example's run() on pandas 1.5, through the real CLI.

Its run() assigns a (rows, 1) array of labels to one column (``result["variety"] = pred``):
pandas 1.5 takes it, pandas 2 and 3 raise ValueError. parajob's workers run the entry script
in parajob's own interpreter, so the example runs only where parajob installs next to pandas
1.5: the minimum-versions job (.ci/test-min-versions) runs this there. The model is a
stand-in (tests/data/pipelines/iris_pandas15/stand_in/mlflow, on PYTHONPATH) with the
``mlflow.sklearn.load_model`` the script calls and a scikit-learn style ``predict``.

    tests/data/pipelines/iris_pandas15 + iris/neural-iris-mltable --copy--> tmp
    --> parajob run pipeline.yml (PYTHONPATH: stand_in) --> outputs/job_output_file rows
"""

from __future__ import annotations

import csv
import os
import shutil
from pathlib import Path

import pandas as pd
import pytest
from conftest import run_cli

DATA = Path(__file__).parent / "data" / "pipelines"
PANDAS_MAJOR = int(pd.__version__.split(".")[0])
STEP = "batch_prediction"


def run_iris(tmp_path: Path) -> tuple[int, str, Path]:
    job = tmp_path / "iris"
    shutil.copytree(DATA / "iris_pandas15", job)
    shutil.copytree(DATA / "iris" / "neural-iris-mltable", job / "neural-iris-mltable")
    stand_in = str(job / "stand_in")
    path = os.pathsep.join(p for p in (stand_in, os.environ.get("PYTHONPATH", "")) if p)
    run_dir = tmp_path / "run"
    proc = run_cli(
        "run", "pipeline.yml", "--run-dir", str(run_dir), cwd=job, env={"PYTHONPATH": path}
    )
    return proc.returncode, proc.stderr, run_dir


def expected_rows() -> list[str]:
    """The input's four measurements, as parajob writes a DataFrame row, and the rule's label."""
    with (DATA / "iris" / "neural-iris-mltable" / "iris.csv").open(encoding="ascii") as f:
        rows = list(csv.DictReader(f))
    out = []
    for r in rows:
        values = [r[k] for k in ("sepal_length", "sepal_width", "petal_length", "petal_width")]
        label = "Iris-setosa" if float(r["petal_length"]) < 2.45 else "Iris-versicolor-or-virginica"
        out.append(" ".join([*(str(float(v)) for v in values), label]))
    return out


@pytest.mark.skipif(
    PANDAS_MAJOR >= 2,
    reason=f"the example's run() needs pandas < 2 (here {pd.__version__}); "
    "it runs in the minimum-versions job (.ci/test-min-versions, pandas 1.5)",
)
def test_iris_example_runs_unchanged_on_pandas_1_5(tmp_path: Path) -> None:
    code, stderr, run_dir = run_iris(tmp_path)
    assert code == 0, stderr
    output = (run_dir / STEP / "outputs" / "job_output_file").read_text(encoding="utf-8")
    assert output.splitlines() == expected_rows()
    result = (run_dir / STEP / "logs" / "job_result.txt").read_text(encoding="utf-8")
    assert "600 in, 600 returned, 0 failed" in result


@pytest.mark.skipif(PANDAS_MAJOR < 2, reason="on pandas 1.5 the example succeeds (the test above)")
def test_iris_example_on_pandas_2_or_later_fails_naming_the_scripts_line(tmp_path: Path) -> None:
    """Where the example cannot run, the user sees their own line and pandas' error."""
    code, stderr, run_dir = run_iris(tmp_path)
    assert code == 1, stderr
    assert "iris_prediction.py" in stderr and 'result["variety"] = pred' in stderr
    assert "ValueError" in stderr
    assert "resume with: parajob run --resume" in stderr
