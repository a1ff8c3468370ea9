"""Failures where the user looks (issue 11): for a successful run, a run with retries, an
init() failure, a run() failure, a segfault and an interrupted run, what job_result.txt,
job_error.txt, readme.txt, the progress overview and stderr say, through the real CLI."""

from __future__ import annotations

import shlex
from pathlib import Path

from conftest import ECHO_SCRIPT, run_cli, run_job, write_job


def _logs(run_dir: Path) -> Path:
    return run_dir / "step" / "logs"


def _resume(run_dir: Path) -> str:
    return f"parajob run --resume {shlex.quote(str(run_dir.resolve()))}"


def test_success_writes_the_reports_and_no_failure(tmp_path: Path) -> None:
    write_job(tmp_path, ECHO_SCRIPT, files=9)
    result = run_job(tmp_path)
    assert result.returncode == 0, result.stderr
    logs = _logs(result.run_dir)
    assert "status:               SUCCEEDED" in result.job_result()
    assert (logs / "job_result.json").is_file()
    assert not (logs / "job_error.txt").exists()
    assert "first failure" not in result.stderr and "--resume" not in result.stderr
    (overview,) = logs.glob("job_progress_overview.*.txt")
    last = overview.read_text().splitlines()[-1]
    assert "3/3 mini-batches" in last and "ETA 0:00" in last and "items 9/9" in last


def test_readme_describes_the_layout_that_exists(tmp_path: Path) -> None:
    write_job(tmp_path, ECHO_SCRIPT, files=3)
    result = run_job(tmp_path)
    assert result.returncode == 0, result.stderr
    logs = _logs(result.run_dir)
    readme = (logs / "readme.txt").read_text()
    # Every concrete path it names (no <placeholder>, no NNN) exists where it says.
    for line in readme.splitlines():
        name = line.split(" ", 1)[0]
        if "/" in name or name.endswith((".txt", ".json", ".bin", ".csv")):
            if "<" in name or "NNN" in name or name == "job_error.txt":
                continue
            assert (logs / name).exists(), f"readme.txt names {name}, not in {logs}"
    assert "../sys/spool/" in readme and "../sys/journal.bin" in readme


FAIL_ONCE = """
import os

def run(mini_batch):
    marker = os.path.join(os.path.dirname(__file__), "..", "failed_once")  # outside task.code
    if any(p.endswith("f00004.txt") for p in mini_batch) and not os.path.exists(marker):
        open(marker, "w").close()
        raise RuntimeError("transient failure")
    return [os.path.basename(p) for p in mini_batch]
"""


def test_a_retry_is_counted_in_the_overview_and_logged(tmp_path: Path) -> None:
    write_job(tmp_path, FAIL_ONCE, files=9, max_retries=2)
    result = run_job(tmp_path)
    assert result.returncode == 0, result.stderr
    logs = _logs(result.run_dir)
    assert "status:               SUCCEEDED" in result.job_result()
    errors = (logs / "job_error.txt").read_text()
    assert "attempt 1" in errors and "RuntimeError: transient failure" in errors
    (overview,) = logs.glob("job_progress_overview.*.txt")
    last = overview.read_text().splitlines()[-1]
    assert "1 retry" in last and "last failure: RuntimeError: transient failure" in last
    assert "first failure" not in result.stderr  # a success: nothing to act on


INIT_FAILS = """
def init():
    raise ValueError("model file models/m.bin not found")

def run(mini_batch):
    return list(mini_batch)
"""


def test_init_failure_traceback_in_job_result_job_error_and_stderr(tmp_path: Path) -> None:
    write_job(tmp_path, INIT_FAILS, files=6)
    result = run_job(tmp_path)
    assert result.returncode == 1
    logs = _logs(result.run_dir)
    text = result.job_result()
    assert "first failure:\ninit() failed in process" in text
    assert "Traceback (most recent call last)" in text
    assert "ValueError: model file models/m.bin not found" in text
    assert 'entry.py", line 3, in init' in text
    errors = (logs / "job_error.txt").read_text()
    assert "--- init() failed in process" in errors
    assert "ValueError: model file models/m.bin not found" in errors
    assert "ValueError: model file models/m.bin not found" in result.stderr
    assert 'entry.py", line 3, in init' in result.stderr
    assert _resume(result.run_dir) in result.stderr


RUN_FAILS = """
def run(mini_batch):
    raise KeyError("no column 'score' in " + mini_batch[0][-10:])
"""


def test_run_failure_traceback_in_job_result_job_error_and_stderr(tmp_path: Path) -> None:
    write_job(tmp_path, RUN_FAILS, files=6, max_retries=1, concurrency=1)  # batch 0 first
    result = run_job(tmp_path)
    assert result.returncode == 1
    logs = _logs(result.run_dir)
    message = "KeyError: \"no column 'score' in f00000.txt\""
    text = result.job_result()
    assert "first failed mini-batch:\nmini-batch 0 (3 files):" in text
    assert "failed 2 times; last attempt raised" in text and message in text
    errors = (logs / "job_error.txt").read_text()
    assert "--- mini-batch 0 attempt 1" in errors and "--- mini-batch 0 attempt 2" in errors
    assert "parajob: step step FAILED:" in result.stderr
    assert "mini-batch 0 (3 files):" in result.stderr and message in result.stderr
    assert 'entry.py", line 3, in run' in result.stderr
    assert _resume(result.run_dir) in result.stderr


SEGFAULT = """
import ctypes

def run(mini_batch):
    ctypes.string_at(0)  # SIGSEGV in native code
"""


def test_segfault_shows_the_faulthandler_trace(tmp_path: Path) -> None:
    write_job(tmp_path, SEGFAULT, files=3, max_retries=0, concurrency=1)
    result = run_job(tmp_path)
    assert result.returncode == 1
    logs = _logs(result.run_dir)
    for where, text in [
        ("job_result.txt", result.job_result()),
        ("job_error.txt", (logs / "job_error.txt").read_text()),
        ("stderr", result.stderr),
    ]:
        assert "killed by SIGSEGV" in text, where
        assert "faulthandler trace (from " in text, where
        assert "Fatal Python error: Segmentation fault" in text, where
        assert 'entry.py", line 5 in run' in text, where
    # The trace stops at the worker's entry: the driver's frames it was forked from are cut.
    assert "cli.py" not in result.job_result()


INTERRUPT_SELF = """
import os, signal

def run(mini_batch):
    marker = os.path.join(os.path.dirname(__file__), "..", "interrupted")  # outside task.code
    if any(p.endswith("f00004.txt") for p in mini_batch) and not os.path.exists(marker):
        open(marker, "w").close()
        os.kill(os.getppid(), signal.SIGINT)  # the driver: as Ctrl-C would
    return [os.path.basename(p) for p in mini_batch]
"""


def test_interrupted_run_prints_the_resume_command(tmp_path: Path) -> None:
    write_job(tmp_path, INTERRUPT_SELF, files=30, mini_batch_size=1, concurrency=1)
    result = run_job(tmp_path)
    assert result.returncode == 130, result.stdout + result.stderr
    assert "parajob: step step INTERRUPTED: interrupted by SIGINT" in result.stderr
    assert _resume(result.run_dir) in result.stderr
    resumed = run_cli(*shlex.split(_resume(result.run_dir))[1:], cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr
