"""Places the run owns (issue 8): the run folder versus the inputs, outputs versus parajob's
own files in the run folder, and output folders that cannot be made. Each refusal is exit 2
with file:line and field, before anything is written."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
from conftest import ECHO_SCRIPT, run_cli, write_job

from parajob import runner
from parajob.runtime import run_folder
from parajob.spec import output_places


def _with_output_path(pipeline: Path, path: str) -> None:
    """Give the write_job pipeline's output `out` a path: (line 12 of the file)."""
    text = pipeline.read_text(encoding="utf-8")
    pipeline.write_text(
        text.replace(
            "        type: uri_file\n", f"        type: uri_file\n        path: {path}\n", 1
        ),
        encoding="utf-8",
    )
    assert pipeline.read_text(encoding="utf-8").splitlines()[11].strip() == f"path: {path}"


def _refused(proc: subprocess.CompletedProcess[str]) -> str:
    """stderr of a run refused as bad input."""
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr
    return proc.stderr


def _listing(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


@pytest.mark.parametrize("run_dir", ["data/run", "data"])
def test_a_run_folder_in_the_input_is_refused(tmp_path: Path, run_dir: str) -> None:
    pipeline = write_job(tmp_path, ECHO_SCRIPT)
    before = _listing(tmp_path / "data")
    err = _refused(run_cli("run", str(pipeline), "--run-dir", run_dir, cwd=tmp_path))
    assert "pipeline.yml:8:" in err and "jobs.step.inputs.data.path" in err
    assert f"the run folder {run_dir}" in err and "input 'data' of step 'step'" in err
    assert "choose a --run-dir outside the input" in err
    # Nothing written into the input: no run folder, no lock file, no rows.
    assert _listing(tmp_path / "data") == before


def test_the_default_run_folder_in_the_input_is_refused_by_validate_and_run(tmp_path: Path) -> None:
    """An input of '.' holds ./runs/<pipeline>-<time>, where a run without --run-dir goes."""
    pipeline = write_job(tmp_path, ECHO_SCRIPT)
    pipeline.write_text(
        pipeline.read_text(encoding="utf-8").replace("path: ./data", "path: ."), encoding="utf-8"
    )
    for command in ("validate", "run"):
        err = _refused(run_cli(command, "pipeline.yml", cwd=tmp_path))
        assert "pipeline.yml:8:" in err and "jobs.step.inputs.data.path" in err, err
        assert "lies inside input 'data' of step 'step'" in err
    assert list((tmp_path / "runs").glob("*/*")) == []  # no run folder holds anything


@pytest.mark.parametrize(
    "path",
    [
        "./run/step/logs/job_result.txt",
        "./run/parajob-run.json",
        "./run/.parajob.lock",
        "./run/step/sys/journal.txt",
        "./run/step",
    ],
)
def test_an_output_on_parajobs_own_files_in_the_run_folder_is_refused(
    tmp_path: Path, path: str
) -> None:
    pipeline = write_job(tmp_path, ECHO_SCRIPT)
    _with_output_path(pipeline, path)
    err = _refused(run_cli("run", str(pipeline), "--run-dir", "run", cwd=tmp_path))
    assert "pipeline.yml:12:" in err and "jobs.step.outputs.out.path" in err, err
    assert "parajob's" in err and "parajob's own" in err
    assert not (tmp_path / "run").exists()  # refused before the run folder was kept


def test_outputs_elsewhere_in_the_run_folder_still_work(tmp_path: Path) -> None:
    """A datastore output in the default datastore folder <run>/datastores/<ds>, and an input
    copied into the run folder (mode: download): inside the run folder, which is fine."""
    pipeline = write_job(tmp_path, ECHO_SCRIPT, files=5)
    _with_output_path(pipeline, "azureml://datastores/workspaceblobstore/paths/${{name}}/o.txt")
    pipeline.write_text(
        pipeline.read_text(encoding="utf-8").replace(
            "path: ./data\n", "path: ./data\n        mode: download\n"
        ),
        encoding="utf-8",
    )
    proc = run_cli("run", str(pipeline), "--run-dir", "run", cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    out = tmp_path / "run" / "datastores" / "workspaceblobstore" / "run-step" / "o.txt"
    assert sorted(out.read_text(encoding="utf-8").split()) == [f"f{i:05d}.txt" for i in range(5)]


@pytest.mark.skipif(not os.path.isdir("/proc/self"), reason="needs procfs at /proc")
def test_an_output_in_proc_is_refused_by_validate_as_by_run(tmp_path: Path) -> None:
    """Root passes os.access on /proc, but mkdir there fails: validate must say so too."""
    pipeline = write_job(tmp_path, ECHO_SCRIPT)
    _with_output_path(pipeline, "/proc/parajob-x/y")
    for command in ("validate", "run"):
        err = _refused(run_cli(command, "pipeline.yml", cwd=tmp_path))
        assert "pipeline.yml:12:" in err and "jobs.step.outputs.out.path" in err, err
        assert "cannot be created" in err and "/proc" in err
    assert not os.path.exists("/proc/parajob-x")


def test_the_run_folders_own_names_match_the_runtime() -> None:
    """spec does not import the runtime; these names are written twice and must agree."""
    assert output_places.RUN_RECORD == runner.RUN_RECORD
    assert output_places.LOCK_NAME == run_folder.LOCK_NAME


def test_an_output_on_a_read_only_file_system_cannot_be_created(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No read-only mount can be made in a test: statvfs says so instead (root passes
    os.access there as anywhere)."""
    real = os.statvfs

    class ReadOnly:
        f_flag = os.ST_RDONLY

    monkeypatch.setattr(os, "statvfs", lambda p: ReadOnly() if str(p) == str(tmp_path) else real(p))
    problem = output_places._not_creatable(tmp_path / "a" / "b", "uri_folder")
    assert problem == f"{tmp_path} is on a read-only file system"
    assert output_places._not_creatable(tmp_path.parent / "c", "uri_folder") is None
