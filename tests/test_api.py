"""parajob.run as a Python caller meets it: results, errors, output, pipelines built in Python.

Each test runs real jobs (forked workers, real files) in this process through the public
API, and where the CLI is the reference (its diagnostics, its run folder) runs that too.
"""

from __future__ import annotations

import json
import re
import textwrap
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from conftest import make_files, run_cli, write_job

import parajob
from parajob.runtime.run_folder import RunFolder

ROOT = Path(__file__).resolve().parents[1]

ECHO = """
import os

def run(mini_batch):
    return [os.path.basename(p) for p in mini_batch]
"""

RAISES_ON_F3 = """
import os

def run(mini_batch):
    if any(p.endswith("f00003.txt") for p in mini_batch):
        raise ValueError("cannot read f00003")
    return [os.path.basename(p) for p in mini_batch]
"""


def names(n: int) -> list[str]:
    return [f"f{i:05d}.txt" for i in range(n)]


def test_a_run_returns_its_counts_and_paths_and_writes_them_as_json(tmp_path: Path) -> None:
    pipeline = write_job(tmp_path, ECHO, files=10, mini_batch_size=3)
    result = parajob.run(pipeline, run_dir=tmp_path / "run")
    assert (result.status, result.succeeded, result.run_dir) == (
        "succeeded",
        True,
        (tmp_path / "run").resolve(),
    )
    step = result.step("step")
    assert (step.kind, step.status, step.reason) == (
        "parallel",
        "succeeded",
        "all mini-batches processed",
    )
    assert (step.total_batches, step.completed_batches, step.failed_batches) == (4, 4, 0)
    assert (step.items_in, step.items_out, step.failed_items, step.failed_attempts) == (
        10,
        10,
        0,
        0,
    )
    assert step.output == result.run_dir / "step" / "outputs" / "out"
    assert step.output.read_text().splitlines() == names(10)
    assert step.logs == result.run_dir / "step" / "logs"
    assert step.failures == ()
    # The same content on disk: <run>/run_result.json and each step's logs/job_result.json.
    assert json.loads((result.run_dir / "run_result.json").read_text()) == json.loads(
        json.dumps(result.to_dict())
    )
    assert json.loads((step.logs / "job_result.json").read_text()) == json.loads(
        json.dumps(step.to_dict())
    )


def test_a_job_that_fails_returns_failed_with_structured_failures(tmp_path: Path) -> None:
    pipeline = write_job(
        tmp_path,
        RAISES_ON_F3,
        files=6,
        mini_batch_size=2,
        max_retries=1,
        extra_step="mini_batch_error_threshold: 0\n",
    )
    result = parajob.run(pipeline, run_dir=tmp_path / "run")  # does not raise
    assert result.status == "failed" and not result.succeeded
    step = result.steps[0]
    assert step.status == "failed" and step.failed_batches == 1
    assert len(step.failures) == 1
    failure = step.failures[0]
    assert (failure.batch, failure.attempts, failure.status) == (1, 2, "raised")
    assert (failure.error_type, failure.message) == ("ValueError", "cannot read f00003")
    assert "f00003.txt" in failure.inputs
    assert failure.traceback.startswith("Traceback")
    assert 'raise ValueError("cannot read f00003")' in failure.traceback
    on_disk = json.loads((step.logs / "job_result.json").read_text())
    assert on_disk["status"] == "failed"
    assert on_disk["failures"][0]["error_type"] == "ValueError"
    assert json.loads((result.run_dir / "run_result.json").read_text())["status"] == "failed"


def test_bad_input_raises_what_the_cli_prints_and_leaves_no_run_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_job(tmp_path, ECHO, files=3)
    text = (
        (tmp_path / "pipeline.yml")
        .read_text()
        .replace('mini_batch_size: "3"', 'mini_batch_size: "three"')
    )
    (tmp_path / "pipeline.yml").write_text(text)
    cli = run_cli("run", "pipeline.yml", cwd=tmp_path)
    assert cli.returncode == 2
    monkeypatch.chdir(tmp_path)
    with pytest.raises(parajob.SpecError) as caught:
        parajob.run("pipeline.yml")
    assert str(caught.value) + "\n" == cli.stderr
    assert "pipeline.yml:" in str(caught.value) and "jobs.step.mini_batch_size" in str(caught.value)
    assert caught.value.errors  # structured, too
    assert not (tmp_path / "runs").exists()  # neither run left a folder, nor ./runs


@pytest.mark.parametrize(
    ("kwargs", "parameter", "found"),
    [
        ({"resume": True}, "run_dir", "resume needs the run folder"),
        ({}, "pipeline", "no pipeline to run"),
        ({"pipeline": "x.yml", "rerun_changed": True}, "rerun_changed", "goes with resume"),
        ({"pipeline": 42}, "pipeline", "found int"),
        ({"pipeline": "type: pipeline\njobs: {}\n"}, "pipeline", "found YAML text"),
        ({"pipeline": "x.yml", "max_tasks_per_worker": 0}, "max_tasks_per_worker", "found 0"),
        ({"pipeline": "x.yml", "max_worker_memory": "lots"}, "max_worker_memory", "'lots'"),
        ({"pipeline": "x.yml", "cancel": True}, "cancel", "threading.Event"),
        ({"pipeline": "x.yml", "set": 5}, "set", "KEY=VALUE"),
        ({"pipeline": "x.yml", "datastores": ["a"]}, "datastores", "mapping"),
        ({"pipeline": "x.yml", "quiet": "no"}, "quiet", "True or False"),
        ({"pipeline": "x.yml", "on_progress": 3}, "on_progress", "function"),
    ],
)
def test_bad_arguments_raise_a_spec_error_naming_the_parameter(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    kwargs: dict[str, Any],
    parameter: str,
    found: str,
) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(parajob.SpecError) as caught:
        parajob.run(**kwargs)
    text = str(caught.value)
    assert text.startswith(f"parajob.run: error: {parameter}: "), text
    assert found in text
    assert not (tmp_path / "runs").exists()


def test_a_missing_pipeline_file_is_a_spec_error_naming_it(tmp_path: Path) -> None:
    with pytest.raises(parajob.SpecError, match="nothere.yml"):
        parajob.run(tmp_path / "nothere.yml", run_dir=tmp_path / "run")
    assert not (tmp_path / "run").exists()


def test_a_run_folder_in_use_is_refused(tmp_path: Path) -> None:
    pipeline = write_job(tmp_path, ECHO, files=3)
    with RunFolder.claim(tmp_path / "run"), pytest.raises(parajob.SpecError, match="in use by pid"):
        parajob.run(pipeline, run_dir=tmp_path / "run")


def test_quiet_prints_nothing(tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    # A job the CLI warns about (a program argument that disagrees with its field).
    pipeline = write_job(
        tmp_path,
        ECHO,
        files=6,
        program_arguments="--error_threshold 5",
        extra_step="error_threshold: 3\n",
    )
    cli = run_cli("run", "pipeline.yml", "--run-dir", "cli-run", cwd=tmp_path)
    assert "disagrees with the program argument" in cli.stderr
    capfd.readouterr()
    assert parajob.run(pipeline, run_dir=tmp_path / "run").succeeded
    assert capfd.readouterr() == ("", "")


def test_not_quiet_shows_progress_and_summary_on_stderr(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    pipeline = write_job(tmp_path, ECHO, files=6)
    result = parajob.run(pipeline, run_dir=tmp_path / "run", quiet=False)
    out, err = capfd.readouterr()
    assert out == ""
    assert re.search(r"\[step\] 2/2 mini-batches", err)
    assert "status:               SUCCEEDED" in err
    assert f"logs:                 {result.steps[0].logs}" in err


@dataclass
class StandInPipeline:
    """What parajob.run uses of a parajob.Pipeline (the SDK helper): dump(path) writes YAML
    that `parajob run` accepts from that place; its own --set and --datastore values."""

    yaml_text: str
    name: str = "standin"
    overrides: tuple[str, ...] = ()
    datastores: dict[str, Path] = field(default_factory=dict)
    dumped: list[Path] = field(default_factory=list)

    def dump(self, path: Path) -> None:
        self.dumped.append(Path(path))
        Path(path).write_text(self.yaml_text, encoding="utf-8")


def standin(tmp: Path, script: str = ECHO, **kwargs: Any) -> StandInPipeline:
    """A pipeline entity whose YAML names its folders by absolute path."""
    text = write_job(tmp, script, files=8, mini_batch_size=2).read_text()
    text = text.replace("./data", str(tmp / "data")).replace("./src", str(tmp / "src"))
    (tmp / "pipeline.yml").unlink()
    return StandInPipeline(text, **kwargs)


def test_a_pipeline_entity_runs_from_its_dump_and_resumes_from_the_cli(tmp_path: Path) -> None:
    entity = standin(tmp_path, overrides=("jobs.step.mini_batch_size=4",))
    result = parajob.run(entity, run_dir=tmp_path / "run")
    assert result.succeeded, result.reason
    assert result.steps[0].total_batches == 2  # the entity's own --set
    dumped = result.run_dir / "parajob-pipeline.yml"
    assert dumped.read_text() == entity.yaml_text
    record = json.loads((result.run_dir / "parajob-run.json").read_text())
    assert record["pipeline"] == str(dumped)
    assert record["overrides"] == ["jobs.step.mini_batch_size=4"]
    assert result.steps[0].output.read_text().splitlines() == names(8)  # type: ignore[union-attr]
    again = run_cli("run", "--resume", str(tmp_path / "run"), cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    assert "status:               SUCCEEDED" in again.stdout


def test_a_call_s_set_comes_after_the_entity_s(tmp_path: Path) -> None:
    entity = standin(tmp_path, overrides=("jobs.step.mini_batch_size=4",))
    result = parajob.run(entity, run_dir=tmp_path / "run", set=["jobs.step.mini_batch_size=1"])
    assert result.steps[0].total_batches == 8


def test_an_entity_that_does_not_validate_leaves_no_run_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    entity = standin(tmp_path, overrides=("jobs.step.mini_batch_size=-1",))
    monkeypatch.chdir(tmp_path)
    with pytest.raises(parajob.SpecError, match="jobs.step.mini_batch_size"):
        parajob.run(entity)
    assert entity.dumped  # it was written, then removed with its folder
    assert not (tmp_path / "runs").exists()


def test_the_default_run_folder_is_runs_name_time(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    entity = standin(tmp_path, name="iris")
    monkeypatch.chdir(tmp_path)
    result = parajob.run(entity)
    assert result.succeeded
    assert re.fullmatch(r"iris-\d{8}-\d{6}", result.run_dir.name)
    assert result.run_dir.parent == (tmp_path / "runs").resolve()
    write_job(tmp_path, ECHO, files=3)
    by_path = parajob.run("pipeline.yml")
    assert re.fullmatch(r"pipeline-\d{8}-\d{6}(-\d+)?", by_path.run_dir.name)


def test_a_command_step_writes_its_job_result_json_too(tmp_path: Path) -> None:
    make_files(tmp_path / "data", 2)
    (tmp_path / "pipeline.yml").write_text(
        textwrap.dedent("""\
        type: pipeline
        jobs:
          copy:
            type: command
            inputs:
              raw: {type: uri_folder, path: ./data}
            outputs:
              copied: {type: uri_folder}
            command: cp -r ${{inputs.raw}}/. ${{outputs.copied}}
        """)
    )
    result = parajob.run(tmp_path / "pipeline.yml", run_dir=tmp_path / "run")
    step = result.step("copy")
    assert (step.kind, step.status) == ("command", "succeeded")
    copied = step.outputs["copied"]
    assert sorted(p.name for p in copied.iterdir()) == names(2)
    on_disk = json.loads((tmp_path / "run" / "copy" / "logs" / "job_result.json").read_text())
    assert on_disk["kind"] == "command" and on_disk["outputs"] == {"copied": str(copied)}
    assert (tmp_path / "run" / "copy" / "logs" / "job_result.txt").is_file()


def test_the_cli_writes_the_same_result_files(tmp_path: Path) -> None:
    write_job(tmp_path, ECHO, files=4)
    proc = run_cli("run", "pipeline.yml", "--run-dir", "run", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    run_result = json.loads((tmp_path / "run" / "run_result.json").read_text())
    assert run_result["status"] == "succeeded" and run_result["steps"][0]["items_out"] == 4
    step = json.loads((tmp_path / "run" / "step" / "logs" / "job_result.json").read_text())
    assert step == run_result["steps"][0]


def test_run_blocks_only_its_own_thread(tmp_path: Path) -> None:
    pipeline = write_job(tmp_path, ECHO, files=4)
    results: list[parajob.RunResult] = []
    thread = threading.Thread(
        target=lambda: results.append(parajob.run(pipeline, run_dir=tmp_path / "run"))
    )
    thread.start()
    thread.join(timeout=120)
    assert [r.status for r in results] == ["succeeded"]


def test_the_version_is_the_same_everywhere(tmp_path: Path) -> None:
    # tomllib is 3.11+; the project supports 3.10
    declared = re.search(r'^version = "([^"]+)"', (ROOT / "pyproject.toml").read_text(), re.M)
    proc = run_cli("--version", cwd=tmp_path)
    assert proc.returncode == 0 and declared is not None
    assert proc.stdout.split()[-1] == parajob.__version__ == declared.group(1)


def test_the_public_names() -> None:
    from parajob.errors import ParajobError, SpecError

    assert parajob.SpecError is SpecError and parajob.ParajobError is ParajobError
    assert issubclass(parajob.SpecError, parajob.ParajobError)
    for name in parajob.__all__:
        assert getattr(parajob, name) is not None
    assert parajob.run.__doc__ and "cancel" in parajob.run.__doc__


def test_a_default_run_folder_that_cannot_be_made_is_bad_input(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pipeline = write_job(tmp_path, ECHO, files=2)
    monkeypatch.chdir("/proc")  # no ./runs can be made here, not even by root
    with pytest.raises(parajob.SpecError, match="cannot create the folder for new runs"):
        parajob.run(pipeline)
    proc = run_cli("run", str(pipeline), cwd=Path("/proc"))
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "/proc/runs: error: --run-dir: cannot create the folder for new runs" in proc.stderr
