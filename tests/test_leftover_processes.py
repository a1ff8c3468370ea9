"""Processes that user code starts and that slip past the run token and the memfd mark: a
scrubbed environment (env={}) exec'd from run() under a SIGKILLed driver, and what an
entry script's import starts in a new session during the import check."""

from __future__ import annotations

import signal
from pathlib import Path

from conftest import run_cli, run_job, write_job
from test_process_hygiene import _assert_all_die, _env, _pids, _wait_until

# run() starts a child with an empty environment (no PARAJOB_RUN_TOKEN; exec drops the
# memfd mapping) that stays in the worker's process group, then SIGKILLs the driver.
SCRUBBED_CHILD_THEN_KILL_THE_DRIVER = """
import os, signal, subprocess, time
MARKERS = os.environ["MARKERS"]

def note(pid):
    os.makedirs(os.path.join(MARKERS, "pids"), exist_ok=True)
    open(os.path.join(MARKERS, "pids", str(pid)), "w").close()

def run(mini_batch):
    note(subprocess.Popen(["sleep", "321"], env={}).pid)
    os.kill(os.getppid(), signal.SIGKILL)  # the driver
    time.sleep(600)
    return mini_batch
"""


def test_a_child_with_an_emptied_environment_dies_with_a_sigkilled_driver(tmp_path: Path) -> None:
    write_job(
        tmp_path,
        SCRUBBED_CHILD_THEN_KILL_THE_DRIVER,
        files=1,
        mini_batch_size=1,
        concurrency=1,
        timeout=30,
        extra_step=_env(tmp_path),
    )
    result = run_job(tmp_path)
    assert result.returncode == -signal.SIGKILL, result.stderr
    pids = _pids(tmp_path / "markers")
    assert len(pids) == 1
    _assert_all_die(pids)


# The import starts children in new sessions (out of the probe's process group), one of them
# orphaned at once; each notes its pid. The workers' imports start them too.
IMPORT_STARTS_NEW_SESSIONS = """
import os, subprocess
MARKERS = os.environ["MARKERS"]
os.makedirs(os.path.join(MARKERS, "pids"), exist_ok=True)
child = subprocess.Popen(["sleep", "312"], env={}, start_new_session=True)
open(os.path.join(MARKERS, "pids", str(child.pid)), "w").close()
subprocess.Popen('setsid sleep 313 & touch "$MARKERS/pids/$!"', shell=True).wait()

def run(mini_batch):
    return mini_batch
"""


def _check_leftovers(tmp_path: Path, command: str) -> None:
    write_job(
        tmp_path, IMPORT_STARTS_NEW_SESSIONS, files=2, concurrency=1, extra_step=_env(tmp_path)
    )
    (tmp_path / "tmp").mkdir()
    args = (
        ("validate", "pipeline.yml")
        if command == "validate"
        else ("run", "pipeline.yml", "--run-dir", "run")
    )
    proc = run_cli(*args, cwd=tmp_path, env={"TMPDIR": str(tmp_path / "tmp")})
    assert proc.returncode == 0, proc.stderr
    pids = _pids(tmp_path / "markers")
    assert len(pids) >= 2
    _assert_all_die(pids)
    _wait_until(
        lambda: list((tmp_path / "tmp").iterdir()) == [], "the import check's folder is removed"
    )


def test_validate_kills_what_the_import_started_in_new_sessions(tmp_path: Path) -> None:
    _check_leftovers(tmp_path, "validate")


def test_run_kills_what_the_imports_started_in_new_sessions(tmp_path: Path) -> None:
    _check_leftovers(tmp_path, "run")
