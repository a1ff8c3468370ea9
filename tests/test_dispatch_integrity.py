"""Integrity of dispatch and accounting in the shapes users hit (issue 8).

Small jobs, one worker, odd batch counts: the shapes the fault matrix (12 batches, 2
workers) never saw. Each test names one failure of issue 8 and asserts what a user relies
on: every row exactly once, in order, and the right attempt counts and reason.
"""

from __future__ import annotations

import csv
import os
from pathlib import Path

import pytest
from conftest import run_cli, run_job, write_job

ONCE_HANG = """
import os, time
MARKERS = os.environ["MARKERS"]

def run(mini_batch):
    name = os.path.basename(mini_batch[0])
    marker = os.path.join(MARKERS, "hung-" + name)
    if name == os.environ["HANG_FILE"] and not os.path.exists(marker):
        open(marker, "w").close()
        time.sleep(3600)  # past retry_settings.timeout, once
    return [os.path.basename(p) for p in mini_batch]
"""


def _markers(tmp: Path, **env: str) -> str:
    (tmp / "markers").mkdir(exist_ok=True)
    lines = [f"  MARKERS: {tmp / 'markers'}"] + [f"  {k}: '{v}'" for k, v in env.items()]
    return "environment_variables:\n" + "\n".join(lines) + "\n"


def _attempts(step_dir: Path) -> list[dict[str, str]]:
    report = step_dir / "logs" / "sys" / "job_report" / "processed_mini-batches.csv"
    with open(report, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


@pytest.mark.parametrize("files,hang", [(1, 0), (2, 0), (2, 1), (3, 1), (4, 0), (4, 3)])
def test_a_run_timeout_with_one_worker_retries_once_and_keeps_every_row(
    tmp_path: Path, files: int, hang: int
) -> None:
    # Was: exit 1 with "dispatch ring full: a batch was queued twice" (the watchdog requeued
    # the batch, then reaping the killed worker requeued it again).
    write_job(
        tmp_path,
        ONCE_HANG,
        files=files,
        mini_batch_size=1,
        concurrency=1,
        timeout=1,
        extra_step=_markers(tmp_path, HANG_FILE=f"f{hang:05d}.txt"),
    )
    result = run_job(tmp_path)
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    assert result.output().splitlines() == [f"f{i:05d}.txt" for i in range(files)]
    assert f"{files} total, {files} completed, 0 failed" in result.job_result()
    assert "failed attempts:      1" in result.job_result()
    rows = _attempts(result.step_dir())
    assert [(r["index"], r["status"]) for r in rows if r["status"] != "succeeded"] == [
        (str(hang), "timed_out")
    ]
    assert sorted(int(r["index"]) for r in rows if r["status"] == "succeeded") == list(range(files))


QUICK_THEN_DYING = """
import os, time
MARKERS = os.environ["MARKERS"]

def run(mini_batch):
    name = os.path.basename(mini_batch[0])
    with open(os.path.join(MARKERS, "calls"), "a") as f:
        f.write(name + "\\n")
    marker = os.path.join(MARKERS, "died")
    if name == "f00003.txt" and not os.path.exists(marker):
        open(marker, "w").close()
        time.sleep(0.5)   # long enough for the quick results before it to be published
        os._exit(9)       # ... then the worker dies
    return [name]
"""


def test_quick_results_are_published_while_the_next_run_is_still_going(tmp_path: Path) -> None:
    # Was: the rows of the quick mini-batches 0-2 were gathered and published only after
    # the next run() returned; that run()'s worker died, and 0-2 ran a second time.
    write_job(
        tmp_path,
        QUICK_THEN_DYING,
        files=6,
        mini_batch_size=1,
        concurrency=1,
        extra_step=_markers(tmp_path),
    )
    result = run_job(tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.output().splitlines() == [f"f{i:05d}.txt" for i in range(6)]
    calls = (tmp_path / "markers" / "calls").read_text().splitlines()
    assert sorted(calls) == sorted([f"f{i:05d}.txt" for i in range(6)] + ["f00003.txt"])
    rows = _attempts(result.step_dir())
    assert sorted((r["index"], r["attempt"], r["status"]) for r in rows) == sorted(
        [(str(i), "1", "succeeded") for i in (0, 1, 2, 4, 5)]
        + [("3", "1", "crashed"), ("3", "2", "succeeded")]
    )


def test_run_exiting_with_status_3_is_a_crash_not_an_init_failure(tmp_path: Path) -> None:
    # Was: "init() failed 3 times" (exit status 3 was read as the init-failure code).
    script = """
    import os
    def run(mini_batch):
        if mini_batch[0].endswith("f00001.txt"):
            os._exit(3)
        return [os.path.basename(p) for p in mini_batch]
    """
    write_job(tmp_path, script, files=4, mini_batch_size=1, concurrency=1, max_retries=2)
    result = run_job(tmp_path)
    assert result.returncode == 0, result.stderr  # -1 thresholds: the job goes on without it
    text = result.job_result()
    assert "init()" not in text
    assert "4 total, 3 completed, 1 failed" in text
    assert "failed 3 times; last attempt crashed" in text and "exited with code 3" in text


def test_a_worker_dying_before_init_is_not_an_init_failure(tmp_path: Path) -> None:
    # Workers that cannot open their log files die while starting, before init(): that is
    # not "init() failed N times" (there is no init() in this script at all).
    write_job(
        tmp_path,
        KILL_DRIVER_AT_2,
        files=6,
        mini_batch_size=1,
        concurrency=1,
        extra_step=_markers(tmp_path),
    )
    first = run_job(tmp_path)
    assert first.returncode == -9
    logs = first.step_dir() / "logs" / "user" / "stdout" / "node000"
    for path in logs.iterdir():
        path.unlink()
    logs.rmdir()
    logs.write_text("not a folder")  # the run folder was tampered with
    resumed = run_cli("run", "--resume", "run", cwd=tmp_path)
    assert resumed.returncode == 1, resumed.stderr
    assert "Traceback" not in resumed.stderr
    text = first.job_result()
    assert "init() failed" not in text
    assert "died 3 times while starting, before init()" in text


KILL_DRIVER_AT_2 = """
import os, signal
def run(mini_batch):
    marker = os.path.join(os.environ["MARKERS"], "killed")
    if mini_batch[0].endswith("f00002.txt") and not os.path.exists(marker):
        open(marker, "w").close()
        os.kill(os.getppid(), signal.SIGKILL)  # the driver
    return [os.path.basename(p) for p in mini_batch]
"""


def test_a_slow_init_does_not_count_against_progress_update_timeout(tmp_path: Path) -> None:
    # Was: "no progress within progress_update_timeout (2 s)" while init() was in its 600 s.
    script = """
    import os, time
    def init():
        time.sleep(4)
    def run(mini_batch):
        return [os.path.basename(p) for p in mini_batch]
    """
    write_job(
        tmp_path,
        script,
        files=3,
        mini_batch_size=1,
        concurrency=2,
        program_arguments="--progress_update_timeout 2",
    )
    result = run_job(tmp_path)
    assert result.returncode == 0, result.job_result()
    assert result.output().splitlines() == [f"f{i:05d}.txt" for i in range(3)]


PIDS = """
import os
def run(mini_batch):
    return [f"{os.path.basename(p)} {os.getpid()}" for p in mini_batch]
"""


def test_workers_are_capped_by_the_mini_batch_count(tmp_path: Path) -> None:
    # Was: max_concurrency_per_instance: 100000000 forked until the machine gave out.
    write_job(tmp_path, PIDS, files=3, mini_batch_size=1, concurrency=100_000_000)
    result = run_job(tmp_path)
    assert result.returncode == 0, result.stderr
    lines = result.output().splitlines()
    assert [line.split()[0] for line in lines] == [f"f{i:05d}.txt" for i in range(3)]
    stdout_logs = list((result.step_dir() / "logs" / "user" / "stdout").rglob("*.txt"))
    assert len(stdout_logs) <= 3  # one log per worker process started
    assert "warning" not in result.stderr  # capped by the work, nothing to warn about


def test_more_workers_than_the_machine_can_run_are_capped_with_a_warning(tmp_path: Path) -> None:
    cap = max(64, 8 * len(os.sched_getaffinity(0)))
    write_job(tmp_path, PIDS, files=cap + 5, mini_batch_size=1, concurrency=100_000_000)
    result = run_job(tmp_path)
    assert result.returncode == 0, result.stderr
    assert f"more than this machine can run ({cap} processes" in result.stderr
    assert len(result.output().splitlines()) == cap + 5
    assert len(list((result.step_dir() / "logs" / "user" / "stdout").rglob("*.txt"))) <= cap


def test_resume_after_a_timeout_in_a_small_job(tmp_path: Path) -> None:
    # A second run in the same place after the fix: resume of a finished run is a no-op.
    write_job(
        tmp_path,
        ONCE_HANG,
        files=2,
        mini_batch_size=1,
        concurrency=1,
        timeout=1,
        extra_step=_markers(tmp_path, HANG_FILE="f00000.txt"),
    )
    first = run_job(tmp_path)
    assert first.returncode == 0, first.stderr
    again = run_cli("run", "--resume", "run", cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    assert first.output().splitlines() == ["f00000.txt", "f00001.txt"]


def test_garbage_written_into_the_workers_high_descriptors_never_breaks_the_report(
    tmp_path: Path,
) -> None:
    # A worker's result files sit at descriptors 10000 and up; user code that scribbles
    # there too (as a loop over "every fd" does) must cost retries, never a parajob
    # traceback or a missing job_result.txt. Was: UnicodeDecodeError joining the CSV parts.
    script = """
    import os
    def run(mini_batch):
        for fd in range(10000, 10010):
            try:
                os.write(fd, b"\\xff\\n")
            except OSError:
                pass
        return [os.path.basename(p) for p in mini_batch]
    """
    write_job(tmp_path, script, files=3, mini_batch_size=1, concurrency=1)
    result = run_job(tmp_path)
    assert "Traceback" not in result.stderr, result.stderr
    assert result.returncode in (0, 1)
    text = result.job_result()  # written, whatever happened
    rows = _attempts(result.step_dir())  # the report parses: every line a row
    assert all(r["status"] for r in rows)
    if result.returncode == 0:
        assert result.output().splitlines() == [f"f{i:05d}.txt" for i in range(3)]
    else:
        assert "FAILED" in text


@pytest.mark.parametrize("where", ["init", "import"])
def test_a_worker_exiting_in_init_says_how_it_died(tmp_path: Path, where: str) -> None:
    # Was: "init() failed 6 times ... see logs/user/error/", with that folder empty and the
    # exit status nowhere.
    exit_now = "    os._exit(3)\n" if where == "init" else ""
    at_import = (
        "if os.environ.get('PARAJOB_RUN_TOKEN'):\n    os._exit(3)\n" if where == "import" else ""
    )
    script = (
        f"import os\n{at_import}def init():\n    pass\n{exit_now}"
        "def run(mini_batch):\n    return mini_batch\n"
    )
    write_job(tmp_path, script, files=2, mini_batch_size=1, concurrency=1)
    result = run_job(tmp_path)
    assert result.returncode == 1, result.stderr
    reason = result.job_result().splitlines()[2]
    assert "init() failed 3 times" in reason and "exited with code 3" in reason, reason
    errors = "".join(
        p.read_text() for p in (result.step_dir() / "logs" / "user" / "error").rglob("*.txt")
    )
    assert "died while importing the entry script or in init(): exited with code 3" in errors
