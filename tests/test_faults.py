"""Fault injection with real processes and real signals (issue 5).

Each test makes one thing go wrong — in run(), in init(), in the worker process, in the
driver — and asserts the outcome a user relies on: every expected row exactly once (or
exactly the rows of the mini-batches that succeeded), the counts in job_result.txt, the
exit code. Entry scripts use marker files so that a fault happens a set number of times.
"""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest
from conftest import run_cli, run_job, write_job

NAMES = [f"f{i:05d}.txt" for i in range(12)]

# A run() that misbehaves once for the file named FAULT_FILE, then behaves.
ONCE = """
import os, signal, sys, time
MARKERS = os.environ["MARKERS"]

def once(tag):
    path = os.path.join(MARKERS, tag)
    if os.path.exists(path):
        return False
    open(path, "w").close()
    return True

def run(mini_batch):
    for p in mini_batch:
        if p.endswith(os.environ["FAULT_FILE"]) and once("fault"):
{fault}
    return [os.path.basename(p) for p in mini_batch]
"""

FAULTS = {
    "raise": "            raise RuntimeError('injected')",
    "exit": "            os._exit(1)",
    "sigkill": "            os.kill(os.getpid(), signal.SIGKILL)",
    "segfault": "            import ctypes; ctypes.string_at(0)",
    "hang": "            time.sleep(3600)",
}


def _env(tmp: Path, fault_file: str = "f00004.txt") -> str:
    (tmp / "markers").mkdir(exist_ok=True)
    return f"environment_variables:\n  MARKERS: {tmp / 'markers'}\n  FAULT_FILE: {fault_file}\n"


@pytest.mark.parametrize("fault", sorted(FAULTS))
def test_a_fault_once_costs_one_retry_and_no_row(tmp_path: Path, fault: str) -> None:
    script = ONCE.format(fault=FAULTS[fault])
    write_job(
        tmp_path,
        script,
        files=12,
        mini_batch_size=1,
        timeout=2 if fault == "hang" else 60,
        extra_step=_env(tmp_path),
    )
    result = run_job(tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.output().splitlines() == NAMES  # every row once, in order
    text = result.job_result()
    assert "12 total, 12 completed, 0 failed" in text
    assert "failed attempts:      1" in text
    errors = (result.step_dir() / "logs" / "job_error.txt").read_text()
    expected = {
        "raise": "RuntimeError: injected",
        "exit": "exited with code 1",
        "sigkill": "killed by SIGKILL",
        "segfault": "killed by SIGSEGV",
        "hang": "exceeded retry_settings.timeout",
    }[fault]
    assert expected in errors
    status = {"raise": "raised", "hang": "timed_out"}.get(fault, "crashed")
    report = result.step_dir() / "logs" / "sys" / "job_report" / "processed_mini-batches.csv"
    assert f",{status}," in report.read_text()
    if fault == "segfault":  # faulthandler left the Python stack in the worker's stderr
        stderr = "".join(
            p.read_text() for p in (result.step_dir() / "logs" / "user" / "stderr").rglob("*.txt")
        )
        assert "Segmentation fault" in stderr


def test_a_mini_batch_failing_every_try_fails_for_good(tmp_path: Path) -> None:
    script = """
    import os
    def run(mini_batch):
        if mini_batch[0].endswith("f00003.txt"):
            raise ValueError("always")
        return [os.path.basename(p) for p in mini_batch]
    """
    write_job(tmp_path, script, files=12, mini_batch_size=1, max_retries=2)
    result = run_job(tmp_path)
    # -1 thresholds ignore failures (docs/contract.md §4.4): the job succeeds without that row.
    assert result.returncode == 0, result.stderr
    assert result.output().splitlines() == [n for n in NAMES if n != "f00003.txt"]
    text = result.job_result()
    assert "12 total, 11 completed, 1 failed" in text and "failed attempts:      3" in text
    assert "f00003.txt" in text and "ValueError: always" in text


def test_memory_blow_up_under_an_address_space_limit_fails_that_batch_only(tmp_path: Path) -> None:
    script = """
    import os, resource
    def init():
        resource.setrlimit(resource.RLIMIT_AS, (2 * 1024**3, 2 * 1024**3))
    def run(mini_batch):
        if mini_batch[0].endswith("f00006.txt"):
            hog = bytearray(8 * 1024**3)
        return [os.path.basename(p) for p in mini_batch]
    """
    write_job(tmp_path, script, files=12, mini_batch_size=1, max_retries=1)
    result = run_job(tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.output().splitlines() == [n for n in NAMES if n != "f00006.txt"]
    assert "MemoryError" in result.job_result()
    assert "12 total, 11 completed, 1 failed" in result.job_result()


def test_init_raising_on_one_worker_is_replaced(tmp_path: Path) -> None:
    script = """
    import os
    def init():
        marker = os.path.join(os.environ["MARKERS"], "init")
        if not os.path.exists(marker):
            open(marker, "w").close()
            raise RuntimeError("init failed once")
    def run(mini_batch):
        return [os.path.basename(p) for p in mini_batch]
    """
    write_job(tmp_path, script, files=12, mini_batch_size=1, extra_step=_env(tmp_path))
    result = run_job(tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.output().splitlines() == NAMES
    errors = "".join(
        p.read_text() for p in (result.step_dir() / "logs" / "user" / "error").rglob("*.txt")
    )
    assert "init failed once" in errors


def test_init_raising_on_every_worker_fails_the_job(tmp_path: Path) -> None:
    write_job(
        tmp_path,
        "def init():\n    raise RuntimeError('no model')\n"
        "def run(mini_batch):\n    return mini_batch\n",
        files=4,
        mini_batch_size=1,
    )
    result = run_job(tmp_path)
    assert result.returncode == 1, result.stderr
    assert "init() failed 6 times" in result.job_result()  # 3 x 2 workers per node
    assert not (result.step_dir() / "outputs" / "out").read_text()


def test_returning_none_fails_the_attempt(tmp_path: Path) -> None:
    write_job(
        tmp_path,
        "def run(mini_batch):\n    return None\n",
        files=2,
        mini_batch_size=1,
        max_retries=0,
        extra_step="mini_batch_error_threshold: 0\n",
    )
    result = run_job(tmp_path)
    assert result.returncode == 1
    assert "run() returned NoneType" in result.job_result()


SHORT = """
import os
def run(mini_batch):
    # Drops the file f00002.txt from its mini-batch: a short return.
    return [os.path.basename(p) for p in mini_batch if not p.endswith("f00002.txt")]
"""


@pytest.mark.parametrize("threshold,exit_code", [(-1, 0), (0, 1), (1, 0)])
def test_short_return_counts_failed_items(tmp_path: Path, threshold: int, exit_code: int) -> None:
    write_job(
        tmp_path, SHORT, files=12, mini_batch_size=3, extra_step=f"error_threshold: {threshold}\n"
    )
    result = run_job(tmp_path)
    assert result.returncode == exit_code, result.stderr
    lines = result.output().splitlines()
    assert "f00002.txt" not in lines and len(lines) == len(set(lines))
    text = result.job_result()
    assert "failed attempts:      0" in text  # a short return is never retried
    if exit_code == 0:
        assert lines == [n for n in NAMES if n != "f00002.txt"]
        assert "12 in, 11 returned, 1 failed" in text
    else:  # fails as soon as the limit is exceeded
        assert "1 failed items exceed error_threshold 0" in text


def test_every_mini_batch_short_with_ignored_errors_succeeds(tmp_path: Path) -> None:
    # The public many-models example: run() returns [] for every partition.
    write_job(
        tmp_path,
        "def run(mini_batch):\n    return []\n",
        files=6,
        mini_batch_size=2,
        append_row=False,
        extra_step="error_threshold: -1\n",
    )
    result = run_job(tmp_path)
    assert result.returncode == 0, result.stderr


def test_append_row_with_no_item_at_all_fails(tmp_path: Path) -> None:
    write_job(tmp_path, "def run(mini_batch):\n    return []\n", files=4, mini_batch_size=2)
    result = run_job(tmp_path)
    assert result.returncode == 1
    assert "append_row is on but run() returned no item" in result.job_result()


FAIL_SOME = """
import os
FAILING = {"f00001.txt", "f00005.txt"}  # two mini-batches of one file fail for good
def run(mini_batch):
    if os.path.basename(mini_batch[0]) in FAILING:
        raise RuntimeError("bad")
    return [os.path.basename(p) for p in mini_batch]
"""


@pytest.mark.parametrize(
    "setting,exit_code",
    [
        ("mini_batch_error_threshold: 2", 0),
        ("mini_batch_error_threshold: 1", 1),
        ("error_threshold: 2", 0),
        ("error_threshold: 1", 1),
    ],
)
def test_thresholds_at_and_one_past_the_limit(tmp_path: Path, setting: str, exit_code: int) -> None:
    write_job(
        tmp_path, FAIL_SOME, files=10, mini_batch_size=1, max_retries=0, extra_step=setting + "\n"
    )
    result = run_job(tmp_path)
    assert result.returncode == exit_code, result.stderr
    reason = result.job_result().splitlines()[2]
    assert (setting.split(":")[0] in reason) == (exit_code == 1), reason


@pytest.mark.parametrize("percent,exit_code", [(20, 0), (19, 1)])
def test_allowed_failed_percent(tmp_path: Path, percent: int, exit_code: int) -> None:
    write_job(
        tmp_path,
        FAIL_SOME,
        files=10,
        mini_batch_size=1,
        max_retries=0,
        program_arguments=f"--allowed_failed_percent {percent}",
    )
    result = run_job(tmp_path)
    assert result.returncode == exit_code, result.stderr
    reason = result.job_result().splitlines()[2]
    assert ("20.0% of mini-batches failed, more than allowed_failed_percent 19" in reason) == (
        exit_code == 1
    ), reason


KILL_DRIVER = """
import os, signal
from azureml_user.parallel_run import EntryScript

def run(mini_batch, context):
    marker = os.path.join(os.environ["MARKERS"], "killed")
    if context.minibatch_index == int(os.environ["KILL_AT"]) and not os.path.exists(marker):
        open(marker, "w").close()
        os.kill(os.getppid(), getattr(signal, os.environ["KILL_SIGNAL"]))  # the driver
    return [os.path.basename(p) for p in mini_batch]
"""


@pytest.mark.parametrize("kill_at", [0, 9, 37])
def test_driver_sigkilled_mid_run_then_resumed_gives_the_uninterrupted_output(
    tmp_path: Path, kill_at: int
) -> None:
    extra = _env(tmp_path) + f"  KILL_AT: '{kill_at}'\n  KILL_SIGNAL: SIGKILL\n"
    write_job(tmp_path, KILL_DRIVER, files=60, mini_batch_size=1, extra_step=extra)
    first = run_job(tmp_path)
    assert first.returncode == -signal.SIGKILL
    assert not (first.step_dir() / "outputs" / "out").exists()  # nothing half-written
    resumed = run_cli("run", "--resume", "run", cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    expected = [f"f{i:05d}.txt" for i in range(60)]
    assert (first.step_dir() / "outputs" / "out").read_text().splitlines() == expected
    assert "60 total, 60 completed, 0 failed" in first.job_result()
    _assert_no_orphans(tmp_path)


def test_ctrl_c_stops_cleanly_and_resume_finishes(tmp_path: Path) -> None:
    extra = _env(tmp_path) + "  KILL_AT: '15'\n  KILL_SIGNAL: SIGINT\n"
    write_job(tmp_path, KILL_DRIVER, files=60, mini_batch_size=1, extra_step=extra)
    first = run_job(tmp_path)
    assert first.returncode == 130, first.stderr
    assert "INTERRUPTED" in first.job_result()
    assert "parajob run --resume" in first.stdout
    resumed = run_cli("run", "--resume", "run", cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    assert (first.step_dir() / "outputs" / "out").read_text().splitlines() == [
        f"f{i:05d}.txt" for i in range(60)
    ]
    _assert_no_orphans(tmp_path)


def test_recycled_workers_lose_nothing(tmp_path: Path) -> None:
    script = """
    import os
    def run(mini_batch):
        return [f"{os.path.basename(p)} {os.getpid()}" for p in mini_batch]
    """
    write_job(tmp_path, script, files=30, mini_batch_size=1)
    proc = run_cli(
        "run", "pipeline.yml", "--run-dir", "run", "--max-tasks-per-worker", "4", cwd=tmp_path
    )
    assert proc.returncode == 0, proc.stderr
    lines = (tmp_path / "run" / "step" / "outputs" / "out").read_text().splitlines()
    assert [line.split()[0] for line in lines] == [f"f{i:05d}.txt" for i in range(30)]
    assert len({line.split()[1] for line in lines}) >= 8  # at most 4 mini-batches per process


def _assert_no_orphans(tmp: Path) -> None:
    """No worker process of this test's runs is still alive (they die with the driver)."""
    marker = str(tmp)
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            environ = Path(f"/proc/{pid}/environ").read_bytes()
        except OSError:
            continue
        assert marker.encode() not in environ, f"orphan process {pid} from {tmp}"


def test_no_mini_batch_started_within_first_task_creation_timeout(tmp_path: Path) -> None:
    write_job(
        tmp_path,
        "import time\ndef init():\n    time.sleep(3600)\n"
        "def run(mini_batch):\n    return mini_batch\n",
        files=2,
        mini_batch_size=1,
        program_arguments="--first_task_creation_timeout 2",
    )
    result = run_job(tmp_path)
    assert result.returncode == 1, result.stderr
    assert "no mini-batch started within first_task_creation_timeout (2 s)" in result.job_result()
    _assert_no_orphans(tmp_path)


def test_no_progress_within_progress_update_timeout(tmp_path: Path) -> None:
    write_job(
        tmp_path,
        "import time\ndef run(mini_batch):\n    time.sleep(3600)\n",
        files=2,
        mini_batch_size=1,
        program_arguments="--progress_update_timeout 2",
    )
    result = run_job(tmp_path)
    assert result.returncode == 1, result.stderr
    assert "no progress within progress_update_timeout (2 s)" in result.job_result()
    _assert_no_orphans(tmp_path)


def test_workers_over_the_memory_cap_are_recycled_between_mini_batches(tmp_path: Path) -> None:
    script = """
    import os
    def run(mini_batch):
        return [f"{os.path.basename(p)} {os.getpid()}" for p in mini_batch]
    """
    write_job(tmp_path, script, files=40, mini_batch_size=1, concurrency=1)
    # 1 MiB: every worker is over it, so each is replaced after its 8th mini-batch (the
    # memory is read every 8 mini-batches).
    proc = run_cli(
        "run", "pipeline.yml", "--run-dir", "run", "--max-worker-memory", "1mb", cwd=tmp_path
    )
    assert proc.returncode == 0, proc.stderr
    lines = (tmp_path / "run" / "step" / "outputs" / "out").read_text().splitlines()
    assert [line.split()[0] for line in lines] == [f"f{i:05d}.txt" for i in range(40)]
    assert len({line.split()[1] for line in lines}) == 5
    job_result = tmp_path / "run" / "step" / "logs" / "job_result.txt"
    assert "failed attempts:      0" in job_result.read_text()


def test_a_bad_memory_cap_is_a_usage_error(tmp_path: Path) -> None:
    write_job(tmp_path, "def run(mini_batch):\n    return mini_batch\n", files=1)
    proc = run_cli("run", "pipeline.yml", "--max-worker-memory", "lots", cwd=tmp_path)
    assert proc.returncode == 2
    assert "expected a size like 512mb or 2gb" in proc.stderr
