"""--serial / RunOptions(serial=True): the same job in the calling process and thread.

Through the CLI (a real process, real files), as a user debugging a job would run it, and
in-process where what matters is *which* process and thread ran the entry script and what
it left behind in the caller.
"""

from __future__ import annotations

import csv
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import threading
import time
import types
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import ECHO_SCRIPT, RUN_TIMEOUT_S, JobRun, run_cli, write_job
from test_table_jobs import IRIS_MLTABLE, iris_rows, write_table_job

from parajob.runner import run_pipeline
from parajob.runtime.options import RunOptions
from parajob.spec import load_pipeline

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "word_count"


def run(
    tmp: Path, pipeline: Path, run_dir: str, *args: str, env: dict[str, str] | None = None
) -> JobRun:
    proc = run_cli("run", str(pipeline), "--run-dir", str(tmp / run_dir), *args, cwd=tmp, env=env)
    return JobRun(proc.returncode, proc.stdout, proc.stderr, tmp / run_dir)


def counts(result: JobRun, step: str = "step") -> list[str]:
    """The count lines of job_result.txt (elapsed time and paths differ between runs)."""
    text = (result.run_dir / step / "logs" / "job_result.txt").read_text(encoding="utf-8")
    keep = ("status:", "mini-batches:", "items:", "failed attempts:")
    return [line for line in text.splitlines() if line.startswith(keep)]


def attempts(result: JobRun, step: str = "step") -> list[tuple[str, ...]]:
    """processed_mini-batches.csv without the columns that name a process or a time."""
    path = result.run_dir / step / "logs" / "sys" / "job_report" / "processed_mini-batches.csv"
    rows = csv.DictReader(path.open(encoding="utf-8"))
    return sorted(
        (r["index"], r["attempt"], r["items_in"], r["items_out"], r["status"]) for r in rows
    )


# ---- same output, same counts --------------------------------------------------------


def test_word_count_serial_output_equals_the_parallel_runs(tmp_path: Path) -> None:
    shutil.copytree(EXAMPLE, tmp_path / "wc")
    pipeline = tmp_path / "wc" / "pipeline.yml"
    parallel = run(tmp_path, pipeline, "par")
    serial = run(tmp_path, pipeline, "ser", "--serial")
    assert parallel.returncode == 0, parallel.stderr
    assert serial.returncode == 0, serial.stderr
    out = Path("count_words") / "outputs" / "counts"
    assert (serial.run_dir / out).read_bytes() == (parallel.run_dir / out).read_bytes()
    assert counts(serial, "count_words") == counts(parallel, "count_words")
    assert attempts(serial, "count_words") == attempts(parallel, "count_words")


def test_table_job_serial_output_equals_the_parallel_runs(tmp_path: Path) -> None:
    rows = iris_rows(2000)
    write_table_job(
        tmp_path,
        IRIS_MLTABLE,
        {"iris.csv": "sepal_length,sepal_width,n,species\n" + "\n".join(rows) + "\n"},
        "def run(mini_batch):\n    return mini_batch\n",
    )
    parallel = run(tmp_path, tmp_path / "pipeline.yml", "par")
    serial = run(tmp_path, tmp_path / "pipeline.yml", "ser", "--serial")
    assert parallel.returncode == 0, parallel.stderr
    assert serial.returncode == 0, serial.stderr
    assert serial.output().encode() == parallel.output().encode()
    assert len(serial.output().splitlines()) == 2000
    assert counts(serial) == counts(parallel)
    assert attempts(serial) == attempts(parallel)


# ---- one process: breakpoint() works -------------------------------------------------


def test_breakpoint_hook_in_run_executes_in_the_calling_process(tmp_path: Path) -> None:
    hooks = tmp_path / "hooks"
    hooks.mkdir()
    (hooks / "hookmod.py").write_text(
        textwrap.dedent("""
        import os, sys
        def hook(*args, **kwargs):
            with open(os.environ["HOOK_LOG"], "a") as f:
                f.write(f"{os.getpid()} {os.getppid()} {sys.stdout.fileno()}\\n")
    """),
        encoding="utf-8",
    )
    write_job(
        tmp_path,
        """
        import os
        def run(mini_batch):
            breakpoint()
            print("stdout of run()", flush=True)
            return [os.path.basename(p) for p in mini_batch]
    """,
        files=6,
        mini_batch_size=2,
    )
    log = tmp_path / "hook.log"
    env = {
        "PYTHONBREAKPOINT": "hookmod.hook",
        "HOOK_LOG": str(log),
        "PYTHONPATH": os.pathsep.join([str(hooks), os.environ.get("PYTHONPATH", "")]),
    }
    # --max-tasks-per-worker 1 would replace a forked worker after every mini-batch; here
    # there is no process to replace.
    result = run(
        tmp_path,
        tmp_path / "pipeline.yml",
        "run",
        "--serial",
        "--max-tasks-per-worker",
        "1",
        env=env,
    )
    assert result.returncode == 0, result.stderr
    calls = [line.split() for line in log.read_text().splitlines()]
    assert len(calls) == 3  # one per mini-batch
    # Every call in one process, whose parent is this test: the parajob command itself.
    assert {(pid, ppid) for pid, ppid, _ in calls} == {(calls[0][0], str(os.getpid()))}
    assert {fd for _, _, fd in calls} == {"1"}
    assert result.stdout.count("stdout of run()") == 3  # the terminal's stdout, not a log
    assert not list((result.step_dir() / "logs" / "user" / "stdout").rglob("*.txt"))


PROBE = "parajob_serial_probe"


@pytest.fixture
def probe() -> Iterator[types.ModuleType]:
    """A module the entry script imports to report to the test (in-process runs only)."""
    module = types.ModuleType(PROBE)
    module.calls = []  # type: ignore[attr-defined]
    sys.modules[PROBE] = module
    yield module
    del sys.modules[PROBE]


PROBE_SCRIPT = f"""
import os, sys, threading
import {PROBE} as probe
probe.calls.append(("import", os.getpid(), threading.get_ident()))
sys.path.append("/nonexistent/added-by-the-entry-script")

def run(mini_batch):
    probe.calls.append(("run", os.getpid(), threading.get_ident(), os.environ.get("STEP_VAR")))
    if getattr(probe, "cancel_after", None) == len(probe.calls) - 1:
        probe.cancel.set()
    return [os.path.basename(p) for p in mini_batch]
"""


def run_in_process(tmp: Path, run_dir: str, **options: object) -> list[object]:
    pipeline = load_pipeline(tmp / "pipeline.yml", run_dir=tmp / run_dir)
    return list(
        run_pipeline(pipeline, tmp / run_dir, RunOptions(serial=True, quiet=True, **options))
    )  # type: ignore[arg-type]


def test_in_process_run_is_in_this_thread_and_leaves_the_caller_as_it_was(
    tmp_path: Path, probe: types.ModuleType
) -> None:
    write_job(
        tmp_path,
        PROBE_SCRIPT,
        files=4,
        mini_batch_size=2,
        extra_step="environment_variables:\n  STEP_VAR: from-the-step\n",
    )
    before = (dict(os.environ), list(sys.argv), list(sys.path), os.getcwd())
    argv, path = sys.argv, sys.path
    for attempt in ("one", "two"):
        (outcome,) = run_in_process(tmp_path, attempt)
        assert outcome.succeeded, outcome.reason  # type: ignore[attr-defined]
        assert (dict(os.environ), list(sys.argv), list(sys.path), os.getcwd()) == before
        assert "entry" not in sys.modules and "azureml_user" not in sys.modules
        assert sys.argv is argv and sys.path is path  # the caller's own lists
    me = (os.getpid(), threading.get_ident())
    assert (
        probe.calls
        == [("import", *me), ("run", *me, "from-the-step"), ("run", *me, "from-the-step")] * 2
    )  # imported fresh each run
    assert (tmp_path / "two" / "step" / "outputs" / "out").read_text().split() == [
        f"f{i:05d}.txt" for i in range(4)
    ]


def test_cancel_stops_between_mini_batches(tmp_path: Path, probe: types.ModuleType) -> None:
    write_job(tmp_path, PROBE_SCRIPT, files=10, mini_batch_size=1)
    probe.cancel = threading.Event()  # type: ignore[attr-defined]
    probe.cancel_after = 2  # type: ignore[attr-defined]  # set inside the 2nd run()
    (outcome,) = run_in_process(tmp_path, "run", cancel=probe.cancel)
    assert outcome.cancelled and outcome.interrupted  # type: ignore[attr-defined]
    assert outcome.tally.done_batches == 2  # type: ignore[attr-defined]
    assert len([c for c in probe.calls if c[0] == "run"]) == 2


# ---- retries, thresholds, timeouts, init, Ctrl-C --------------------------------------


def test_retries_and_counts_match_the_parallel_run(tmp_path: Path) -> None:
    write_job(
        tmp_path,
        """
        import os
        from pathlib import Path
        def run(mini_batch):
            name = os.path.basename(mini_batch[0])
            marker = Path(os.environ["MARKERS"]) / f"{os.environ['MODE']}-{name}"
            if name.endswith(("0.txt", "5.txt")) and not marker.exists():
                marker.touch()
                raise ValueError("first try of " + name)
            return [os.path.basename(p) for p in mini_batch]
    """,
        files=12,
        mini_batch_size=1,
        max_retries=1,
    )
    (tmp_path / "markers").mkdir()
    env = {"MARKERS": str(tmp_path / "markers")}
    parallel = run(tmp_path, tmp_path / "pipeline.yml", "par", env={**env, "MODE": "par"})
    serial = run(tmp_path, tmp_path / "pipeline.yml", "ser", "--serial", env={**env, "MODE": "ser"})
    assert serial.returncode == parallel.returncode == 0, serial.stderr
    assert serial.output() == parallel.output()
    assert counts(serial) == counts(parallel)
    assert "failed attempts:      3" in serial.job_result()
    assert attempts(serial) == attempts(parallel)
    assert [a[4] for a in attempts(serial)].count("raised") == 3


def test_mini_batch_error_threshold_stops_a_serial_run(tmp_path: Path) -> None:
    write_job(
        tmp_path,
        """
        def run(mini_batch):
            if any(p.endswith("f00003.txt") for p in mini_batch):
                raise RuntimeError("always")
            return mini_batch
    """,
        files=10,
        mini_batch_size=1,
        max_retries=1,
        extra_step="mini_batch_error_threshold: 0\n",
    )
    result = run(tmp_path, tmp_path / "pipeline.yml", "run", "--serial")
    assert result.returncode == 1
    text = result.job_result()
    assert "1 failed mini-batches exceed mini_batch_error_threshold 0" in text
    assert "failed attempts:      2" in text
    # Its retry went to the back of the queue; the step stopped when that failed too.
    assert "mini-batches:         10 total, 9 completed, 1 failed" in text


def test_timeout_is_reported_not_enforced(tmp_path: Path) -> None:
    write_job(
        tmp_path,
        """
        import time
        def run(mini_batch):
            if any(p.endswith("f00001.txt") for p in mini_batch):
                time.sleep(1.5)  # past retry_settings.timeout (1 s): the scenario itself
            return mini_batch
    """,
        files=3,
        mini_batch_size=1,
        timeout=1,
    )
    result = run(tmp_path, tmp_path / "pipeline.yml", "run", "--serial")
    assert result.returncode == 0, result.stderr
    assert "0 failed" in result.job_result() and "failed attempts:      0" in result.job_result()
    warning = "mini-batch 1 attempt 1 ran"
    assert warning in result.stderr and "not enforced with --serial" in result.stderr
    error_log = result.step_dir() / "logs" / "user" / "error" / "node000" / "process001.txt"
    assert "past retry_settings.timeout (1 s)" in error_log.read_text()


def test_init_failure_is_tried_once(tmp_path: Path) -> None:
    write_job(
        tmp_path,
        """
        def init():
            raise RuntimeError("no model here")
        def run(mini_batch):
            return mini_batch
    """,
        files=4,
    )
    result = run(tmp_path, tmp_path / "pipeline.yml", "run", "--serial")
    assert result.returncode == 1
    assert "init() failed 1 times" in result.job_result()
    error_log = result.step_dir() / "logs" / "user" / "error" / "node000" / "process001.txt"
    assert error_log.read_text().count("RuntimeError: no model here") == 1


def test_ctrl_c_in_run_stops_as_interrupted_and_resumes(tmp_path: Path) -> None:
    write_job(
        tmp_path,
        """
        import os, time
        from pathlib import Path
        def run(mini_batch):
            if mini_batch[0].endswith("f00002.txt") and not Path(os.environ["READY"]).exists():
                Path(os.environ["READY"]).touch()
                deadline = time.monotonic() + 60
                while time.monotonic() < deadline:  # until Ctrl-C reaches us
                    time.sleep(0.01)
            return [os.path.basename(p) for p in mini_batch]
    """,
        files=6,
        mini_batch_size=1,
    )
    ready = tmp_path / "ready"
    env = {**os.environ, "READY": str(ready)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "parajob", "run", "pipeline.yml", "--run-dir", "run", "--serial"],
        cwd=tmp_path,
        env=env,
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    deadline = time.monotonic() + RUN_TIMEOUT_S
    while not ready.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    assert ready.exists(), proc.communicate()
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=RUN_TIMEOUT_S)
    assert proc.returncode == 130, stderr
    text = (tmp_path / "run" / "step" / "logs" / "job_result.txt").read_text()
    assert "interrupted by SIGINT" in text and "failed attempts:      0" in text
    resumed = run_cli(
        "run",
        "--resume",
        str(tmp_path / "run"),
        "--serial",
        cwd=tmp_path,
        env={"READY": str(ready)},
    )
    assert resumed.returncode == 0, resumed.stderr
    assert (tmp_path / "run" / "step" / "outputs" / "out").read_text().split() == [
        f"f{i:05d}.txt" for i in range(6)
    ]


def test_serial_echo_job_through_job_create(tmp_path: Path) -> None:
    pipeline = write_job(tmp_path, ECHO_SCRIPT, files=5, mini_batch_size=2)
    proc = run_cli(
        "job",
        "create",
        "--file",
        str(pipeline),
        "--run-dir",
        str(tmp_path / "r"),
        "--serial",
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "r" / "step" / "outputs" / "out").read_text().split() == [
        f"f{i:05d}.txt" for i in range(5)
    ]
