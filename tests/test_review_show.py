"""A user's-eye review of "see what happened" (issue 11): what `parajob show`, its HTML
report, job_result.json and the terminal say after real runs (the real CLI, real files)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import ECHO_SCRIPT, RUN_TIMEOUT_S, run_cli, run_in_pty, run_job, write_job

INIT_FAILS = """
def init():
    raise RuntimeError("model file /models/m.bin not found")

def run(mini_batch):
    return mini_batch
"""

SLOW = """
import os, time

def run(mini_batch):
    time.sleep(0.15)
    return [os.path.basename(p) for p in mini_batch]
"""


def test_init_failure_is_in_job_result_json_and_in_show(tmp_path: Path) -> None:
    # job_result.txt and stderr hold init()'s traceback; job_result.json ("the same as
    # data"), `parajob show` and the HTML report said only "see logs/user/error/".
    write_job(tmp_path, INIT_FAILS, files=4)
    result = run_job(tmp_path)
    assert result.returncode == 1, result.stderr
    assert "RuntimeError: model file" in result.job_result()
    saved = json.loads((result.step_dir() / "logs" / "job_result.json").read_text())
    assert saved["first_failure"].startswith("init() failed in process")
    assert "RuntimeError: model file /models/m.bin not found" in saved["first_failure"]
    run_result = json.loads((result.run_dir / "run_result.json").read_text())
    assert "RuntimeError: model file" in run_result["steps"][0]["first_failure"]

    shown = run_cli("show", str(result.run_dir), cwd=tmp_path)
    assert shown.returncode == 0, shown.stderr
    assert "first failure:" in shown.stdout
    assert "RuntimeError: model file /models/m.bin not found" in shown.stdout

    report = tmp_path / "report.html"
    made = run_cli("show", "--html", str(result.run_dir), "-o", str(report), cwd=tmp_path)
    assert made.returncode == 0, made.stderr
    page = report.read_text(encoding="utf-8")
    assert "RuntimeError: model file /models/m.bin not found" in page
    assert "No failed attempt." not in page


def test_succeeded_step_has_an_empty_first_failure(tmp_path: Path) -> None:
    write_job(tmp_path, ECHO_SCRIPT, files=4)
    result = run_job(tmp_path)
    assert result.returncode == 0, result.stderr
    saved = json.loads((result.step_dir() / "logs" / "job_result.json").read_text())
    assert saved["first_failure"] == ""
    shown = run_cli("show", str(result.run_dir), cwd=tmp_path)
    assert "first failure" not in shown.stdout


def test_monitor_on_but_no_sample_yet_is_not_called_off(tmp_path: Path) -> None:
    # The default interval is 600 s: a short step ends before the first sample. show said
    # "--resource_monitor_interval 0: off", the report "the resource monitor was off".
    write_job(tmp_path, ECHO_SCRIPT, files=4)
    result = run_job(tmp_path)
    assert result.returncode == 0, result.stderr
    shown = run_cli("show", str(result.run_dir), cwd=tmp_path)
    line = next(x for x in shown.stdout.splitlines() if x.strip().startswith("resources:"))
    assert "interval 0" not in line and "off" not in line, line
    assert "before the first sample" in line, line
    report = tmp_path / "report.html"
    run_cli("show", "--html", str(result.run_dir), "-o", str(report), cwd=tmp_path)
    page = report.read_text(encoding="utf-8")
    assert "monitor was off" not in page
    assert "before the first sample" in page

    # At interval 0 it was off, and both still say so.
    off = tmp_path / "off"
    off.mkdir()
    write_job(off, ECHO_SCRIPT, files=4, program_arguments="--resource_monitor_interval 0")
    result = run_job(off)
    assert result.returncode == 0, result.stderr
    shown = run_cli("show", str(result.run_dir), cwd=off)
    line = next(x for x in shown.stdout.splitlines() if x.strip().startswith("resources:"))
    assert "--resource_monitor_interval 0: off" in line, line
    run_cli("show", "--html", str(result.run_dir), "-o", str(report), cwd=off)
    assert "monitor was off" in report.read_text(encoding="utf-8")


# rich's default bar colours: "bar.complete" rgb(249,38,114), on 256 colours 38;5;197 (a
# red), "bar.finished" rgb(114,156,31).
RED_SGR = re.compile(r"\x1b\[(?:[0-9;]*;)?(?:31|91|38;5;(?:1|9|160|196|197|198|203))m")


def test_progress_bar_is_not_red_when_nothing_failed(tmp_path: Path) -> None:
    # From 140 columns the line has a bar: it was drawn red while nothing had failed.
    write_job(tmp_path, SLOW, files=16, mini_batch_size=1)
    _, out = run_in_pty(tmp_path, 200, "run", "pipeline.yml", "--run-dir", "run")
    assert "━" in out, repr(out[-2000:])  # the bar was drawn
    assert "status:               SUCCEEDED" in out, out[-2000:]
    assert not RED_SGR.search(out), repr(out[:3000])


def test_stopped_step_elapsed_ends_when_its_driver_last_wrote(tmp_path: Path) -> None:
    # A driver killed (SIGKILL) leaves a "stopped" step; show gave it the time from its
    # start until now, so a run killed after 2 s read "elapsed: 3600 s" an hour later.
    write_job(tmp_path, SLOW, files=40, mini_batch_size=1)
    run_dir = tmp_path / "run"
    driver = subprocess.Popen(
        [sys.executable, "-m", "parajob", "run", "pipeline.yml", "--run-dir", str(run_dir)],
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    timeline_file = run_dir / "step" / "logs" / "sys" / "job_report" / "attempts_timeline.bin"
    deadline = time.monotonic() + RUN_TIMEOUT_S
    while not (timeline_file.exists() and timeline_file.stat().st_size > 0):
        assert driver.poll() is None, "the step ended before it could be killed"
        assert time.monotonic() < deadline, "no attempt decided"
        time.sleep(0.05)
    driver.kill()
    driver.wait()
    # As if an hour had passed since: every file, and the recorded start, an hour older.
    settings_file = timeline_file.parent / "settings.json"
    settings = json.loads(settings_file.read_text())
    settings["started"] -= 3600
    settings_file.write_text(json.dumps(settings))
    for path in run_dir.rglob("*"):
        st = path.lstat()
        os.utime(path, (st.st_atime - 3600, st.st_mtime - 3600), follow_symlinks=False)
    shown = run_cli("show", str(run_dir), cwd=tmp_path)
    assert shown.returncode == 0, shown.stderr
    assert "STOPPED" in shown.stdout, shown.stdout
    elapsed = next(x for x in shown.stdout.splitlines() if x.strip().startswith("elapsed:"))
    assert float(elapsed.split()[1]) < 600, elapsed


def test_running_command_step_is_shown_as_one(tmp_path: Path) -> None:
    # A command step has no settings.json: while it ran, show called it "(parallel):
    # UNKNOWN", with "settings: (not recorded: a run of an older parajob)".
    (tmp_path / "pipeline.yml").write_text(
        "type: pipeline\njobs:\n  prep:\n    type: command\n    command: echo hello; sleep 60\n",
        encoding="utf-8",
    )
    run_dir = tmp_path / "run"
    driver = subprocess.Popen(
        [sys.executable, "-m", "parajob", "run", "pipeline.yml", "--run-dir", str(run_dir)],
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        log = run_dir / "prep" / "logs" / "user" / "std_log.txt"
        deadline = time.monotonic() + RUN_TIMEOUT_S
        while not log.exists():
            assert driver.poll() is None and time.monotonic() < deadline
            time.sleep(0.05)
        shown = run_cli("show", str(run_dir), cwd=tmp_path)
    finally:
        driver.send_signal(2)  # Ctrl-C: the command's process group goes with it
        driver.wait(RUN_TIMEOUT_S)
    assert shown.returncode == 0, shown.stderr
    assert "step prep (command): RUNNING" in shown.stdout, shown.stdout
    assert "older parajob" not in shown.stdout and "UNKNOWN" not in shown.stdout


def test_step_being_planned_is_starting_not_an_older_run(tmp_path: Path) -> None:
    # A parallel step's folder exists before settings.json (its input is still being
    # listed, which takes a while for a large one): show called it UNKNOWN, "a run of an
    # older parajob". Here the driver is a process holding the run folder's lock.
    run_dir = tmp_path / "run"
    (run_dir / "step" / "logs").mkdir(parents=True)
    (run_dir / "parajob-run.json").write_text('{"pipeline": "p.yml"}', encoding="utf-8")
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import fcntl, os, sys\n"
            f"f = open({str(run_dir / '.parajob.lock')!r}, 'w')\n"
            "f.write(str(os.getpid())); f.flush(); fcntl.flock(f, fcntl.LOCK_EX)\n"
            "print('locked', flush=True); sys.stdin.read()",
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "locked\n"
        shown = run_cli("show", str(run_dir), cwd=tmp_path)
    finally:
        holder.kill()
        holder.wait()
    assert shown.returncode == 0, shown.stderr
    assert "step step (parallel): STARTING" in shown.stdout, shown.stdout
    assert "older parajob" not in shown.stdout


SEGFAULT = """
import ctypes, os

def run(mini_batch):
    if any(p.endswith("f00004.txt") for p in mini_batch):
        ctypes.string_at(0)
    return [os.path.basename(p) for p in mini_batch]
"""


def test_crashed_attempt_says_why_not_its_outermost_frame(tmp_path: Path) -> None:
    # A segfault's error text ends with faulthandler's trace; its "last line" (the error
    # column of processed_mini-batches.csv, Failure.message in job_result.json, show, the
    # report) was the trace's outermost frame, 'File ".../worker.py", line 110 in
    # worker_main', not "worker killed by SIGSEGV".
    write_job(tmp_path, SEGFAULT, files=9, max_retries=1)
    result = run_job(tmp_path)
    assert result.returncode == 0, result.stderr
    saved = json.loads((result.step_dir() / "logs" / "job_result.json").read_text())
    (failure,) = saved["failures"]
    assert failure["status"] == "crashed"
    assert failure["message"].startswith("worker killed by SIGSEGV"), failure
    assert "Fatal Python error: Segmentation fault" in failure["traceback"], failure
    assert "entry.py" in failure["traceback"]
    # Its frames below the user's (parajob's worker loop) are left out, as from a traceback.
    assert "parajob/runtime" not in failure["traceback"], failure["traceback"]
    assert "parajob/runtime" not in result.job_result(), result.job_result()
    rows = (
        (result.step_dir() / "logs" / "sys" / "job_report" / "processed_mini-batches.csv")
        .read_text()
        .splitlines()
    )
    crashed = [r for r in rows if ",crashed," in r]
    assert len(crashed) == 2 and all("worker killed by SIGSEGV" in r for r in crashed), rows
    assert not any("worker_main" in r for r in rows), rows
    shown = run_cli("show", str(result.run_dir), cwd=tmp_path)
    assert "last crashed: worker killed by SIGSEGV" in shown.stdout, shown.stdout


RAISES = """
import os

def run(mini_batch):
    if any(p.endswith("f00004.txt") for p in mini_batch):
        raise ValueError("cannot parse f00004.txt")
    return [os.path.basename(p) for p in mini_batch]
"""


@pytest.mark.parametrize("program_arguments", ["", "--profiling_module cProfile"])
def test_run_traceback_starts_at_the_entry_script(tmp_path: Path, program_arguments: str) -> None:
    # The traceback of a failed run() began with parajob's own frames (worker.py _run_one;
    # with --profiling_module also profiling.py and cProfile.py's runcall): noise above
    # the user's frame in job_result.txt, job_error.txt, logs/user/error and show.
    write_job(tmp_path, RAISES, files=9, max_retries=0, program_arguments=program_arguments)
    result = run_job(tmp_path)
    assert result.returncode == 0, result.stderr
    error_log = next((result.step_dir() / "logs" / "user" / "error").rglob("*.txt"))
    for text in (
        result.job_result(),
        (result.step_dir() / "logs" / "job_error.txt").read_text(),
        error_log.read_text(),
        result.stdout,
    ):
        tb = text[text.index("Traceback (most recent call last):") :]
        first_frame = tb.splitlines()[1]
        assert "entry.py" in first_frame and "in run" in first_frame, tb
        assert "ValueError: cannot parse f00004.txt" in tb
        assert "parajob/runtime" not in tb and "cProfile.py" not in tb, tb


def test_init_traceback_starts_at_the_entry_script(tmp_path: Path) -> None:
    write_job(tmp_path, INIT_FAILS, files=4)
    result = run_job(tmp_path)
    assert result.returncode == 1
    for text in (result.job_result(), result.stderr):
        tb = text[text.index("Traceback (most recent call last):") :]
        first_frame = tb.splitlines()[1]
        assert "entry.py" in first_frame and "in init" in first_frame, tb
        assert "parajob/runtime" not in tb.split("RuntimeError: model file")[0], tb


def test_show_of_a_step_folder_names_the_run_folder(tmp_path: Path) -> None:
    # `parajob show RUN/step` (the folder a step's logs are in) said only "holds no
    # parajob run".
    write_job(tmp_path, ECHO_SCRIPT, files=4)
    result = run_job(tmp_path)
    shown = run_cli("show", str(result.step_dir()), cwd=tmp_path)
    assert shown.returncode == 2
    assert "is the folder of one step of a run" in shown.stderr, shown.stderr
    assert f"parajob show {result.run_dir}" in shown.stderr
    assert "Traceback" not in shown.stderr


def test_show_lists_the_program_arguments_the_step_ran_with(tmp_path: Path) -> None:
    # The resolved settings left out task.program_arguments, so show did not say what
    # --resource_monitor_interval (or --profiling_module ...) a step ran with.
    write_job(
        tmp_path,
        ECHO_SCRIPT,
        files=4,
        program_arguments="--resource_monitor_interval 1 --copy_logs_to_parent True",
    )
    result = run_job(tmp_path)
    assert result.returncode == 0, result.stderr
    shown = run_cli("show", str(result.run_dir), cwd=tmp_path)
    line = next(x for x in shown.stdout.splitlines() if "program_arguments" in x)
    assert line.split() == [
        "program_arguments",
        "--resource_monitor_interval",
        "1",
        "--copy_logs_to_parent",
        "True",
    ], line
    report = tmp_path / "report.html"
    run_cli("show", "--html", str(result.run_dir), "-o", str(report), cwd=tmp_path)
    assert "--resource_monitor_interval 1 --copy_logs_to_parent True" in report.read_text()
