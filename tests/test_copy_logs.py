"""--copy_logs_to_parent True: the step's job_result.txt, job_result.json and progress
overview are copied to the pipeline run folder's logs/<step>/ when it ends (README)."""

from __future__ import annotations

import json
from pathlib import Path

from conftest import ECHO_SCRIPT, run_job, write_job


def test_the_results_and_overview_are_copied_to_the_run_folder(tmp_path: Path) -> None:
    write_job(tmp_path, ECHO_SCRIPT, files=6, program_arguments="--copy_logs_to_parent True")
    job = run_job(tmp_path)
    assert job.returncode == 0, job.stderr
    logs, parent = job.step_dir() / "logs", job.run_dir / "logs" / "step"
    overviews = sorted(p.name for p in logs.glob("job_progress_overview.*.txt"))
    assert overviews
    assert sorted(p.name for p in parent.iterdir()) == sorted(
        ["job_result.txt", "job_result.json", *overviews]
    )
    for name in ("job_result.txt", "job_result.json", *overviews):
        assert (parent / name).read_bytes() == (logs / name).read_bytes(), name
    assert json.loads((parent / "job_result.json").read_text())["succeeded"] is True


def test_a_failed_step_is_copied_too(tmp_path: Path) -> None:
    script = "def run(mini_batch):\n    raise ValueError('bad input')\n"
    write_job(
        tmp_path, script, files=2, max_retries=0, program_arguments="--copy_logs_to_parent True"
    )
    job = run_job(tmp_path)
    assert job.returncode != 0
    copied = (job.run_dir / "logs" / "step" / "job_result.txt").read_text()
    assert copied == job.job_result() and "ValueError: bad input" in copied


def test_nothing_is_copied_by_default(tmp_path: Path) -> None:
    write_job(tmp_path, ECHO_SCRIPT, files=2)
    job = run_job(tmp_path)
    assert job.returncode == 0, job.stderr
    assert not (job.run_dir / "logs").exists()
