"""A resume or a running job never mixes rows of two settings or two codes (issue 8).

Real drivers in real processes: a driver is SIGKILLed half way (run() kills its parent),
the YAML's program_arguments or environment_variables are edited, then the run is
resumed; and the entry script is edited while a run with --max-tasks-per-worker goes
(run() of one mini-batch waits for the test's "edited" marker, so the edit lands while
that worker is busy and before its replacement imports the code).
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import RUN_TIMEOUT_S, run_cli, run_job, write_job

N_FILES = 20
NAMES = [f"f{i:05d}.txt" for i in range(N_FILES)]

# Each row says what run() saw: its argv and $TAG. The driver is SIGKILLed once, at
# mini-batch 10.
SETTINGS_SCRIPT = """
import os, signal, sys

def run(mini_batch, context):
    marker = os.path.join(os.environ["MARKERS"], "killed")
    if context.minibatch_index == 10 and not os.path.exists(marker):
        open(marker, "w").close()
        os.kill(os.getppid(), signal.SIGKILL)  # the driver
    return [os.path.basename(p) + " " + " ".join(sys.argv[1:]) + " " + os.environ["TAG"]
            for p in mini_batch]
"""


def _settings_job(tmp: Path) -> None:
    (tmp / "markers").mkdir(exist_ok=True)
    write_job(
        tmp,
        SETTINGS_SCRIPT,
        files=N_FILES,
        mini_batch_size=1,
        program_arguments="--mode a",
        extra_step=f"environment_variables:\n  MARKERS: {tmp / 'markers'}\n  TAG: one\n",
    )
    # A second script, there from the start: choosing it changes no task.code file.
    (tmp / "src" / "main.py").write_text(
        SETTINGS_SCRIPT.replace('" " + os.environ', '" main " + os.environ')
    )


def _output(tmp: Path, run: str = "run", name: str = "outputs/out") -> list[str]:
    return (tmp / run / "step" / name).read_text().splitlines()


# (label, YAML text replaced, by what, the named change, the rows after --rerun-changed,
# where the output is, relative to the step folder)
SETTING_CHANGES = [
    (
        "program_arguments",
        '"--mode a"',
        '"--mode b"',
        "jobs.step.task.program_arguments changed since the run started",
        [f"{n} --mode b one" for n in NAMES],
        "outputs/out",
    ),
    (
        "environment_variables",
        "TAG: one",
        "TAG: s3cr3t",
        "jobs.step.environment_variables.TAG changed since the run started",
        [f"{n} --mode a s3cr3t" for n in NAMES],
        "outputs/out",
    ),
    (
        "entry_script",
        "entry_script: entry.py",
        "entry_script: main.py",
        "jobs.step.task.entry_script changed since the run started",
        [f"{n} --mode a main one" for n in NAMES],
        "outputs/out",
    ),
    (
        "append_row_to",
        "type: uri_folder\n        path: ./data\n    outputs:\n      out:\n"
        "        type: uri_file\n",
        "type: uri_folder\n        path: ./data\n    outputs:\n"
        "      out:\n        type: uri_folder\n",
        "jobs.step.task.append_row_to changed since",
        [f"{n} --mode a one" for n in NAMES],
        "outputs/out/parallel_run_step.txt",
    ),
]


@pytest.mark.parametrize(
    ("label", "old", "new", "named", "rows", "where"),
    SETTING_CHANGES,
    ids=[c[0] for c in SETTING_CHANGES],
)
def test_resume_after_a_step_setting_changed_is_refused(
    tmp_path: Path, label: str, old: str, new: str, named: str, rows: list[str], where: str
) -> None:
    _settings_job(tmp_path)
    first = run_job(tmp_path)
    assert first.returncode == -signal.SIGKILL, first.stderr
    pipeline = tmp_path / "pipeline.yml"  # the same input files and code, other settings
    assert old in pipeline.read_text(), label
    pipeline.write_text(pipeline.read_text().replace(old, new))

    refused = run_cli("run", "--resume", "run", cwd=tmp_path)
    assert refused.returncode == 2, refused.stderr
    assert named in refused.stderr and "--rerun-changed" in refused.stderr, refused.stderr
    assert "s3cr3t" not in refused.stderr  # a variable is named, its value is not shown
    assert "Traceback" not in refused.stderr
    assert not (tmp_path / "run" / "step" / "outputs" / "out").exists()

    rerun = run_cli("run", "--resume", "run", "--rerun-changed", cwd=tmp_path)
    assert rerun.returncode == 0, rerun.stderr
    fresh = run_cli("run", "pipeline.yml", "--run-dir", "fresh", cwd=tmp_path)
    assert fresh.returncode == 0, fresh.stderr
    # every row of the new settings, as a fresh run gives them
    assert _output(tmp_path, name=where) == _output(tmp_path, "fresh", where) == rows

    # logging_level changes no row: a resume after it is not refused.
    text = pipeline.read_text()
    assert "logging_level" not in text and "    task:\n" in text
    pipeline.write_text(text.replace("    task:\n", "    logging_level: DEBUG\n    task:\n"))
    again = run_cli("run", "--resume", "run", cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    assert _output(tmp_path, name=where) == rows


# Mini-batches of 2 files on one worker recycled every 2 mini-batches (--max-tasks-per-worker
# 2: the second worker runs mini-batches 2 and 3, the last 8 and 9); mini-batch WAIT_AT
# waits until the test has edited this file ("," -> ";").
EDITED_SCRIPT = """
import os, time

MARKERS = os.environ["MARKERS"]
SEPARATOR = ","

def run(mini_batch, context):
    i = context.minibatch_index
    if i == int(os.environ["WAIT_AT"]) and not os.path.exists(os.path.join(MARKERS, "edited")):
        open(os.path.join(MARKERS, "waiting"), "w").close()
        deadline = time.monotonic() + 120
        while not os.path.exists(os.path.join(MARKERS, "edited")):
            if time.monotonic() > deadline:
                raise TimeoutError("the test never edited the entry script")
            time.sleep(0.02)
    return [os.path.basename(p) + SEPARATOR + str(i) for p in mini_batch]
"""


def _wait_for(path: Path, proc: subprocess.Popen[str]) -> None:
    deadline = time.monotonic() + RUN_TIMEOUT_S
    while not path.exists():
        if proc.poll() is not None:
            pytest.fail(f"the run ended before {path.name} appeared:\n{proc.communicate()}")
        if time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"{path} did not appear in {RUN_TIMEOUT_S}s")
        time.sleep(0.02)


def _rows(separator: str) -> list[str]:
    return [f"f{i:05d}.txt{separator}{i // 2}" for i in range(N_FILES)]


@pytest.mark.parametrize("wait_at", [3, 9], ids=["replacement", "end"])
def test_an_entry_script_edited_while_the_job_runs_stops_it(tmp_path: Path, wait_at: int) -> None:
    # 3: the next replacement's check stops the job. 9: no replacement comes after the
    # edit; the check before the output is written stops it (the rows are all old-code
    # here, but a replacement may import after its check: the driver cannot tell).
    markers = tmp_path / "markers"
    markers.mkdir()
    write_job(
        tmp_path,
        EDITED_SCRIPT,
        files=N_FILES,
        mini_batch_size=2,
        concurrency=1,
        extra_step=f"environment_variables:\n  MARKERS: {markers}\n  WAIT_AT: '{wait_at}'\n",
    )
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "parajob",
            "run",
            "pipeline.yml",
            "--run-dir",
            "run",
            "--max-tasks-per-worker",
            "2",
        ],
        cwd=tmp_path,
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    _wait_for(markers / "waiting", proc)
    entry = tmp_path / "src" / "entry.py"
    entry.write_text(entry.read_text().replace('SEPARATOR = ","', 'SEPARATOR = ";"  # v2'))
    (markers / "edited").touch()
    try:
        out, err = proc.communicate(timeout=RUN_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        proc.kill()
        pytest.fail(f"parajob did not finish in {RUN_TIMEOUT_S}s\n{proc.communicate()}")

    assert proc.returncode == 1, err
    reason = "task.code file entry.py changed while the job ran"
    assert reason in out and "--rerun-changed" in out, (out, err)
    assert reason in (tmp_path / "run" / "step" / "logs" / "job_result.txt").read_text()
    # No output at all: its rows could mix two codes.
    assert not (tmp_path / "run" / "step" / "outputs" / "out").exists()

    plain = run_cli("run", "--resume", "run", cwd=tmp_path)  # the journal sees it too
    assert plain.returncode == 2, plain.stderr
    assert "task.code file entry.py changed since the run started" in plain.stderr
    rerun = run_cli("run", "--resume", "run", "--rerun-changed", cwd=tmp_path)
    assert rerun.returncode == 0, rerun.stderr
    assert _output(tmp_path) == _rows(";")  # every row from the new code
