"""A user's-eye review of parajob.run, RunResult, --serial and the CLI (issue 9).

Each test is a problem found by using the feature as a user would, run through real
processes and real files (tests/conftest.py), and fails without its fix.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import ECHO_SCRIPT, RUN_TIMEOUT_S, run_cli, write_job

import parajob

BREAKPOINT_SCRIPT = """
    import os
    def run(mini_batch):
        here = len(mini_batch)
        breakpoint()
        return [os.path.basename(p) for p in mini_batch]
"""


def _serial_under_pdb(tmp: Path, keys: str, *args: str) -> subprocess.CompletedProcess[str]:
    """parajob run --serial with pdb driven through a pipe (the keys are pdb commands)."""
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "parajob",
            "run",
            "pipeline.yml",
            "--run-dir",
            "run",
            "--serial",
            *args,
        ],
        cwd=tmp,
        input=keys,
        text=True,
        capture_output=True,
        timeout=RUN_TIMEOUT_S,
    )


# ---- pdb's quit in --serial -----------------------------------------------------------


def test_quitting_pdb_in_serial_stops_the_step_as_interrupted_and_resumes(tmp_path: Path) -> None:
    # `q` at the pdb prompt is "stop": it must not count as run() raising (a failed try,
    # retried: the prompt came back once per try and mini-batch) and fail the job.
    write_job(tmp_path, BREAKPOINT_SCRIPT, files=4, mini_batch_size=1)
    proc = _serial_under_pdb(tmp_path, "p here\nq\n")
    assert proc.returncode == 130, proc.stdout + proc.stderr
    assert proc.stdout.count("(Pdb)") == 2, proc.stdout  # "p here", then "q": one prompt
    text = (tmp_path / "run" / "step" / "logs" / "job_result.txt").read_text()
    assert "stopped by quitting pdb (q)" in text and "failed attempts:      0" in text, text
    assert "BdbQuit" not in proc.stderr
    resumed = _serial_under_pdb(tmp_path, "c\n" * 4, "--resume", "run")
    # (--resume with a PIPELINE given as well: the run folder's own pipeline is used)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert (tmp_path / "run" / "step" / "outputs" / "out").read_text().split() == [
        f"f{i:05d}.txt" for i in range(4)
    ]


# ---- bad input that only a step of the run itself produced ----------------------------

MADE_BY_PREP = r"""type: pipeline
jobs:
  prep:
    type: command
    outputs:
      table: {type: mltable}
    command: >-
      printf 'paths:\n  - file: ./rows.csv\ntransformations:\n  - read_delimited: {}\n'
      > ${{outputs.table}}/MLTable && printf 'a,b\n1,2\n' > ${{outputs.table}}/rows.csv
  score:
    type: parallel
    inputs:
      data: ${{parent.jobs.prep.outputs.table}}
    outputs:
      out: {type: uri_file}
    input_data: ${{inputs.data}}
    partition_keys: [nosuchcolumn]
    task: {type: run_function, code: ./src, entry_script: echo.py,
           append_row_to: "${{outputs.out}}"}
"""


def _write_made_by_prep(tmp: Path) -> Path:
    (tmp / "src").mkdir()
    (tmp / "src" / "echo.py").write_text("def run(mini_batch):\n    return ['x']\n")
    pipeline = tmp / "pipeline.yml"
    pipeline.write_text(MADE_BY_PREP)
    return pipeline


def test_a_step_whose_produced_input_is_bad_does_not_run_and_the_run_still_returns(
    tmp_path: Path,
) -> None:
    # `prep` ran (its output is there); the table it wrote has no column `nosuchcolumn`,
    # which nothing could check before the run. That was a SpecError ("nothing started")
    # out of parajob.run: prep's result lost, no run_result.json, the CLI's exit 2.
    pipeline = _write_made_by_prep(tmp_path)
    result = parajob.run(pipeline, run_dir=tmp_path / "run")
    assert result.step("prep").succeeded
    score = result.step("score")
    assert score.status == "not_run" and "nosuchcolumn" in score.reason, score
    assert result.status == "not_run" and not result.succeeded
    saved = json.loads((tmp_path / "run" / "run_result.json").read_text())
    assert [s["status"] for s in saved["steps"]] == ["succeeded", "not_run"]


def test_the_cli_reports_such_a_run_as_failed_with_every_summary(tmp_path: Path) -> None:
    _write_made_by_prep(tmp_path)
    proc = run_cli("run", "pipeline.yml", "--run-dir", "run", cwd=tmp_path)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "step:                 prep" in proc.stdout
    assert "NOT RUN" in proc.stdout and "nosuchcolumn" in proc.stdout
    assert (tmp_path / "run" / "run_result.json").exists()


# ---- the CLI's flags ------------------------------------------------------------------


def test_resume_with_a_different_run_dir_is_a_usage_error(tmp_path: Path) -> None:
    # --run-dir was ignored in silence: the run in --resume's folder went on, and the
    # folder the user named stayed empty.
    write_job(tmp_path, ECHO_SCRIPT, files=3)
    first = run_cli("run", "pipeline.yml", "--run-dir", "run", cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    proc = run_cli("run", "--resume", "run", "--run-dir", "elsewhere", cwd=tmp_path)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "--run-dir" in proc.stderr and "--resume" in proc.stderr
    assert not (tmp_path / "elsewhere").exists()
    same = run_cli("run", "--resume", "run", "--run-dir", str(tmp_path / "run"), cwd=tmp_path)
    assert same.returncode == 0, same.stderr  # the same folder twice is no contradiction


# ---- on_progress ----------------------------------------------------------------------


def test_a_step_with_no_input_files_still_reports_its_final_progress(tmp_path: Path) -> None:
    # README: on_progress is called "once with final=True at each parallel step's end";
    # a step over an empty folder ended without any call (a UI waiting for it waited on).
    pipeline = write_job(tmp_path, ECHO_SCRIPT, files=0)
    (tmp_path / "data").mkdir(exist_ok=True)
    events: list[parajob.ProgressEvent] = []
    result = parajob.run(pipeline, run_dir=tmp_path / "run", on_progress=events.append)
    assert result.succeeded and result.step("step").total_batches == 0
    assert [(e.step, e.total_batches, e.final) for e in events] == [("step", 0, True)]


# ---- Ctrl-C in a host that runs serial=True -----------------------------------------

HOLD_SCRIPT = """
    import os, time
    from pathlib import Path
    def run(mini_batch):
        if mini_batch[0].endswith("f00002.txt") and not Path(os.environ["READY"]).exists():
            Path(os.environ["READY"]).touch()
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:  # until Ctrl-C reaches us
                time.sleep(0.01)
        return [os.path.basename(p) for p in mini_batch]
"""


def test_ctrl_c_in_run_with_serial_true_comes_out_of_parajob_run(tmp_path: Path) -> None:
    # README: parajob.run installs no handler, "its KeyboardInterrupt comes out of the run".
    # With serial=True a Ctrl-C inside run() was swallowed into an "interrupted" result,
    # so a host's `for p in pipelines: parajob.run(p, serial=True)` went on to the next.
    write_job(tmp_path, HOLD_SCRIPT, files=5, mini_batch_size=1)
    host = f"""
import os, signal, sys, threading, time
from pathlib import Path
import parajob
ready = Path({str(tmp_path / "ready")!r})
os.environ["READY"] = str(ready)
def interrupt():
    while not ready.exists():
        time.sleep(0.01)
    os.kill(os.getpid(), signal.SIGINT)
threading.Thread(target=interrupt, daemon=True).start()
try:
    result = parajob.run("pipeline.yml", run_dir="run", serial=True)
except KeyboardInterrupt:
    print("KeyboardInterrupt came out")
    print("cwd back:", os.getcwd() == {str(tmp_path)!r}, "argv back:", sys.argv == ["-c"])
else:
    print("returned", result.status)
resumed = parajob.run(run_dir="run", resume=True, serial=True)
print("resumed", resumed.status, resumed.step("step").failed_attempts)
"""
    proc = subprocess.run(
        [sys.executable, "-c", host],
        cwd=tmp_path,
        text=True,
        capture_output=True,
        timeout=RUN_TIMEOUT_S,
        env={**__import__("os").environ, "READY": str(tmp_path / "ready")},
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "KeyboardInterrupt came out" in proc.stdout, proc.stdout + proc.stderr
    assert "cwd back: True argv back: True" in proc.stdout
    assert "resumed succeeded 0" in proc.stdout
    assert (tmp_path / "run" / "step" / "outputs" / "out").read_text().split() == [
        f"f{i:05d}.txt" for i in range(5)
    ]


def test_quitting_pdb_with_serial_true_raises_bdbquit_out_of_parajob_run(tmp_path: Path) -> None:
    # As a breakpoint() in any function the host calls: `q` ends the call with BdbQuit.
    write_job(tmp_path, BREAKPOINT_SCRIPT, files=3, mini_batch_size=1)
    host = """
import bdb
import os
import parajob
try:
    parajob.run("pipeline.yml", run_dir="run", serial=True)
except bdb.BdbQuit:
    print("BdbQuit came out")
os.environ["PYTHONBREAKPOINT"] = "0"  # the workers' breakpoint() is a no-op
resumed = parajob.run(run_dir="run", resume=True)
print("resumed", resumed.status, resumed.step("step").failed_attempts)
"""
    proc = subprocess.run(
        [sys.executable, "-c", host],
        cwd=tmp_path,
        input="q\n",
        text=True,
        capture_output=True,
        timeout=RUN_TIMEOUT_S,
    )
    assert "BdbQuit came out" in proc.stdout, proc.stdout + proc.stderr
    assert "resumed succeeded 0" in proc.stdout, proc.stdout + proc.stderr


# ---- a refused run leaves nothing behind ------------------------------------------------


def test_a_refused_run_leaves_no_runs_folder_nor_parents_it_made(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # "Bad input raises SpecError before anything starts (no run folder is left)": the
    # run folder went, but the ./runs it made for it (or --run-dir's new parents) stayed.
    pipeline = write_job(tmp_path, ECHO_SCRIPT, files=3)
    monkeypatch.chdir(tmp_path)
    before = sorted(p.name for p in tmp_path.iterdir())
    for run_dir in (None, tmp_path / "a" / "b" / "run"):
        with pytest.raises(parajob.SpecError, match="mini_batch_size"):
            parajob.run(pipeline, run_dir=run_dir, set=["jobs.step.mini_batch_size=0"])
        assert sorted(p.name for p in tmp_path.iterdir()) == before
    proc = run_cli("run", "pipeline.yml", "--set", "jobs.step.mini_batch_size=0", cwd=tmp_path)
    assert proc.returncode == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == before
    (tmp_path / "runs").mkdir()  # a ./runs of earlier runs stays, of course
    (tmp_path / "runs" / "old").mkdir()
    with pytest.raises(parajob.SpecError):
        parajob.run(pipeline, set=["jobs.step.mini_batch_size=0"])
    assert [p.name for p in (tmp_path / "runs").iterdir()] == ["old"]


# ---- Ctrl-C before the steps start (the import check) ----------------------------------

SLOW_IMPORT_SCRIPT = """
    import os, time
    from pathlib import Path
    Path(os.environ["MARK"]).touch()  # the import check has started
    time.sleep(60)
    def run(mini_batch):
        return mini_batch
"""


@pytest.mark.parametrize("signum", ["SIGINT", "SIGTERM"])
def test_ctrl_c_during_the_import_check_exits_130_and_leaves_no_run_folder(
    tmp_path: Path, signum: str
) -> None:
    # It was click's "Aborted!" with exit 1 ("the job ran and failed"), and the run folder
    # stayed with only its lock file in it (not a run folder --resume accepts). SIGTERM
    # (README: exit 130 too) ended the process on the spot: exit 143, the folder left.
    import os
    import signal
    import time

    write_job(tmp_path, SLOW_IMPORT_SCRIPT, files=3)
    mark = tmp_path / "mark"
    # --serial: `run` probes the first step's script only then (issue 13: otherwise its
    # workers are the check; tests/test_startup.py has Ctrl-C during their import).
    proc = subprocess.Popen(
        [sys.executable, "-m", "parajob", "run", "pipeline.yml", "--run-dir", "run", "--serial"],
        cwd=tmp_path,
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={**os.environ, "MARK": str(mark)},
    )
    deadline = time.monotonic() + RUN_TIMEOUT_S
    while not mark.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    assert mark.exists(), proc.communicate()
    proc.send_signal(getattr(signal, signum))
    out, err = proc.communicate(timeout=RUN_TIMEOUT_S)
    assert proc.returncode == 130, out + err
    assert "interrupted" in err and "Aborted" not in err and "Traceback" not in err, err
    assert not (tmp_path / "run").exists()


# ---- flags that --serial cannot honour ------------------------------------------------


def test_recycling_flags_with_serial_are_warned_about(tmp_path: Path) -> None:
    # README: --serial has "no recycling"; the flags were dropped in silence.
    write_job(tmp_path, ECHO_SCRIPT, files=3)
    proc = run_cli(
        "run",
        "pipeline.yml",
        "--run-dir",
        "run",
        "--serial",
        "--max-tasks-per-worker",
        "1",
        "--max-worker-memory",
        "1gb",
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    assert "max_tasks_per_worker (--max-tasks-per-worker) does nothing with serial" in proc.stderr
    assert "max_worker_memory (--max-worker-memory) does nothing with serial" in proc.stderr
    plain = run_cli("run", "pipeline.yml", "--run-dir", "run2", "--serial", cwd=tmp_path)
    assert "does nothing" not in plain.stderr


# ---- a new run into a run folder of an earlier run ------------------------------------

PREP_THEN_SCORE = """type: pipeline
jobs:
  prep:
    type: command
    inputs:
      raw: {type: uri_folder, path: ./data}
    outputs:
      copied: {type: uri_folder}
    command: cp -r ${{inputs.raw}}/. ${{outputs.copied}}/ && echo prep ran >> PREP_RAN
  score:
    type: parallel
    inputs:
      data: ${{parent.jobs.prep.outputs.copied}}
    outputs:
      out: {type: uri_file}
    input_data: ${{inputs.data}}
    task: {type: run_function, code: ./src, entry_script: entry.py,
           append_row_to: "${{outputs.out}}"}
"""


def test_a_new_run_into_an_earlier_run_s_folder_is_refused_before_any_step_runs(
    tmp_path: Path,
) -> None:
    # The "already holds step" check was the parallel step's own: the command step before
    # it ran again first, overwriting the earlier run's output, then the refusal came.
    write_job(tmp_path, ECHO_SCRIPT, files=3)
    (tmp_path / "pipeline.yml").write_text(
        PREP_THEN_SCORE.replace("PREP_RAN", str(tmp_path / "prep-ran"))
    )
    first = run_cli("run", "pipeline.yml", "--run-dir", "run", cwd=tmp_path)
    assert first.returncode == 0, first.stdout + first.stderr
    assert (tmp_path / "prep-ran").read_text() == "prep ran\n"
    second = run_cli("run", "pipeline.yml", "--run-dir", "run", cwd=tmp_path)
    assert second.returncode == 2, second.stdout + second.stderr
    assert "the run folder already holds step 'prep'" in second.stderr
    assert (tmp_path / "prep-ran").read_text() == "prep ran\n"  # not run again
    with pytest.raises(parajob.SpecError, match="already holds step 'prep'"):
        parajob.run(tmp_path / "pipeline.yml", run_dir=tmp_path / "run")
    resumed = run_cli("run", "--resume", "run", cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr


# ---- README promises without a test so far --------------------------------------------


def test_failures_hold_the_first_1000_and_the_counts_hold_them_all(tmp_path: Path) -> None:
    # README, "Failure (a mini-batch failed for good, the first 1000)".
    pipeline = write_job(
        tmp_path,
        """
        def run(mini_batch):
            raise ValueError("no " + mini_batch[0].rsplit("/", 1)[-1])
    """,
        files=1003,
        mini_batch_size=1,
        max_retries=0,
        extra_step="mini_batch_error_threshold: -1\n",
    )
    result = parajob.run(pipeline, run_dir=tmp_path / "run")
    step = result.step("step")
    assert step.failed_batches == 1003 and len(step.failures) == 1000
    assert sorted(f.batch for f in step.failures) == sorted({f.batch for f in step.failures})
    first = min(step.failures, key=lambda f: f.batch)
    assert (first.error_type, first.status, first.attempts) == ("ValueError", "raised", 1)
    saved = json.loads((tmp_path / "run" / "step" / "logs" / "job_result.json").read_text())
    assert len(saved["failures"]) == 1000 and saved["failed_batches"] == 1003


def test_the_help_names_every_exit_code(tmp_path: Path) -> None:
    # `parajob --help` listed 0, 1 and 2; README's 130 (interrupted) was missing.
    proc = run_cli("--help", cwd=tmp_path)
    text = " ".join(proc.stdout.split())
    assert "0 success, 1 the job failed, 2 bad input, 130 interrupted" in text, proc.stdout


# ---- resume keeps what it is not given again ------------------------------------------


def test_resume_with_only_a_datastore_keeps_the_run_s_own_set_overrides(tmp_path: Path) -> None:
    # A --datastore given alone on --resume dropped the recorded --set: the step was
    # planned anew (3 files per mini-batch instead of 1) and refused as "changed since the
    # run started", blaming the input.
    write_job(tmp_path, ECHO_SCRIPT, files=4, mini_batch_size=3)
    first = run_cli(
        "run",
        "pipeline.yml",
        "--run-dir",
        "run",
        "--set",
        "jobs.step.mini_batch_size=1",
        cwd=tmp_path,
    )
    assert first.returncode == 0, first.stderr
    store = tmp_path / "store"
    store.mkdir()
    resumed = run_cli("run", "--resume", "run", "--datastore", f"extra={store}", cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    result = parajob.run(run_dir=tmp_path / "run", resume=True, datastores={"extra": store})
    assert result.succeeded and result.step("step").total_batches == 4, result.reason


def test_a_cancel_event_of_another_kind_is_named_in_full(tmp_path: Path) -> None:
    # "expected a threading.Event, found Event" for a multiprocessing.Event.
    import multiprocessing

    pipeline = write_job(tmp_path, ECHO_SCRIPT, files=1)
    with pytest.raises(parajob.SpecError, match="found multiprocessing.synchronize.Event"):
        parajob.run(pipeline, run_dir=tmp_path / "run", cancel=multiprocessing.Event())
    assert not (tmp_path / "run").exists()


def test_sigterm_mid_run_exits_130_and_resume_finishes(tmp_path: Path) -> None:
    # README: exit 130 for "Ctrl-C or SIGTERM"; only Ctrl-C mid-run had a test.
    from test_faults import KILL_DRIVER, _env

    extra = _env(tmp_path) + "  KILL_AT: '7'\n  KILL_SIGNAL: SIGTERM\n"
    write_job(tmp_path, KILL_DRIVER, files=30, mini_batch_size=1, extra_step=extra)
    first = run_cli("run", "pipeline.yml", "--run-dir", "run", cwd=tmp_path)
    assert first.returncode == 130, first.stdout + first.stderr
    assert "interrupted by SIGTERM" in first.stdout
    resumed = run_cli("run", "--resume", "run", cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    assert (tmp_path / "run" / "step" / "outputs" / "out").read_text().splitlines() == [
        f"f{i:05d}.txt" for i in range(30)
    ]
