"""The command line as a user meets it: exit codes, where messages go, what is created."""

from __future__ import annotations

import textwrap
from pathlib import Path

from conftest import ECHO_SCRIPT, run_cli, write_job


def position(path: Path, needle: str) -> str:
    """``line:column`` (1-based) of the first ``needle`` in the file."""
    lines = path.read_text().splitlines()
    line = next(i for i, text in enumerate(lines) if needle in text)
    return f"{line + 1}:{lines[line].index(needle) + 1}"


def test_validate_prints_warnings_and_a_summary(tmp_path: Path) -> None:
    write_job(tmp_path, ECHO_SCRIPT, files=3, program_arguments="--resource_monitor_interva 5")
    proc = run_cli("validate", "pipeline.yml", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "pipeline.yml: valid (1 step(s): step (parallel))\n"
    where = position(tmp_path / "pipeline.yml", "--resource_monitor_interva")
    assert (
        f"pipeline.yml:{where}: warning: jobs.step.task.program_arguments: "
        "'--resource_monitor_interva' is not a runtime flag" in proc.stderr
    )


def test_bad_input_exits_2_before_anything_is_created(tmp_path: Path) -> None:
    write_job(tmp_path, "def init():\n    pass\n", files=3)
    proc = run_cli("run", "pipeline.yml", "--run-dir", str(tmp_path / "run"), cwd=tmp_path)
    assert proc.returncode == 2
    where = position(tmp_path / "pipeline.yml", "entry.py")
    assert (
        f"pipeline.yml:{where}: error: jobs.step.task.entry_script: entry script entry.py: "
        "defines no run(mini_batch) function" in proc.stderr
    )
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "run").exists()


def test_set_is_validated_like_the_file(tmp_path: Path) -> None:
    write_job(tmp_path, ECHO_SCRIPT, files=3)
    proc = run_cli(
        "run",
        "pipeline.yml",
        "--set",
        "jobs.step.mini_batch_size=1kbkb",
        "--set",
        "jobs.step.retry_settings.time_out=5",
        cwd=tmp_path,
    )
    assert proc.returncode == 2
    assert (
        "--set jobs.step.mini_batch_size=1kbkb: error: jobs.step.mini_batch_size: "
        "expected a number of files or a size like '10kb'" in proc.stderr
    )
    assert (
        "--set jobs.step.retry_settings.time_out=5: error: "
        "jobs.step.retry_settings.time_out: unknown key 'time_out'\n"
        "  hint: did you mean 'timeout'?" in proc.stderr
    )


def test_malformed_options_are_usage_errors(tmp_path: Path) -> None:
    write_job(tmp_path, ECHO_SCRIPT, files=3)
    proc = run_cli("validate", "pipeline.yml", "--datastore", "blob", cwd=tmp_path)
    assert proc.returncode == 2
    assert "expected NAME=VALUE, found 'blob'" in proc.stderr


def test_missing_pipeline_file(tmp_path: Path) -> None:
    proc = run_cli("validate", "nope.yml", cwd=tmp_path)
    assert proc.returncode == 2
    assert proc.stderr.startswith("nope.yml: error: no such file")


def test_resume_reuses_the_recorded_overrides(tmp_path: Path) -> None:
    write_job(tmp_path, ECHO_SCRIPT, files=4, mini_batch_size=1)
    (tmp_path / "pipeline.yml").write_text(
        (tmp_path / "pipeline.yml")
        .read_text()
        .replace("type: pipeline\n", "type: pipeline\ninputs:\n  n: 1\n")
    )
    run = tmp_path / "run"
    first = run_cli(
        "run",
        "pipeline.yml",
        "--run-dir",
        str(run),
        "--set",
        "jobs.step.mini_batch_size=2",
        cwd=tmp_path,
    )
    assert first.returncode == 0, first.stderr
    again = run_cli("run", "--resume", str(run), cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    assert "mini-batches:         2 total" in again.stdout


def test_a_command_job_file_runs_alone(tmp_path: Path) -> None:
    (tmp_path / "hello.yml").write_text(
        textwrap.dedent("""\
        type: command
        outputs:
          greeting: {type: uri_file}
        command: echo "hello from ${PWD##*/}" > ${{outputs.greeting}}
        """)
    )
    run = tmp_path / "run"
    proc = run_cli("run", "hello.yml", "--run-dir", str(run), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert (run / "hello" / "outputs" / "greeting").read_text() == "hello from code\n"
    assert "status:               SUCCEEDED" in proc.stdout
