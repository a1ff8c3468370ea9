"""`parajob run`'s start-up: the first step's own workers are its import check.

No probe process imports the entry script before the first step's workers (it cost
0.05-0.57 s on the critical path: issue 13); a script that does not import, or whose
run()/init() cannot be called, is still refused with exit 2, with the words of
`parajob validate`, once, and with nothing left behind.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
from conftest import run_cli, run_job, write_job

# Appends one line per import of the script: whether the importing process is a worker of
# a step (the token is exported to workers only: executors/reaping.py).
RECORD_IMPORT = """
import os
with open({log!r}, "a") as _f:
    _f.write(("worker" if os.environ.get("PARAJOB_RUN_TOKEN") else "other") + "\\n")
"""


def _imports(log: Path) -> list[str]:
    return log.read_text().splitlines() if log.exists() else []


def _errors(text: str) -> list[str]:
    """The error lines of a CLI's stderr (path:line:column: error: ...)."""
    return [line for line in text.splitlines() if ": error: " in line]


def test_run_imports_the_first_steps_script_only_in_its_workers(tmp_path: Path) -> None:
    log = tmp_path / "imports.txt"
    script = RECORD_IMPORT.format(log=str(log)) + (
        "def run(mini_batch):\n    return [os.path.basename(p) for p in mini_batch]\n"
    )
    write_job(tmp_path, script, files=6, mini_batch_size=1, concurrency=2)
    result = run_job(tmp_path)
    assert result.returncode == 0, result.stderr
    assert sorted(result.output().splitlines()) == [f"f{i:05d}.txt" for i in range(6)]
    assert _imports(log) == ["worker", "worker"]  # no probe imported it first


def test_validate_still_imports_the_script(tmp_path: Path) -> None:
    log = tmp_path / "imports.txt"
    write_job(tmp_path, RECORD_IMPORT.format(log=str(log)) + "def run(mb):\n    return mb\n")
    proc = run_cli("validate", "pipeline.yml", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert _imports(log) == ["other"]


BAD_SCRIPTS = {
    "import error": "import parajob_no_such_module_xyz\n\ndef run(mini_batch):\n    return []\n",
    "run signature": "def run(a, b, c):\n    return []\n",
    "init signature": "def init(model):\n    pass\n\ndef run(mini_batch):\n    return []\n",
    "raises at import": "raise RuntimeError('no model')\n\ndef run(mini_batch):\n    return []\n",
}


@pytest.mark.parametrize("mistake", sorted(BAD_SCRIPTS))
def test_a_script_its_workers_cannot_use_is_refused_like_validate_refuses_it(
    tmp_path: Path, mistake: str
) -> None:
    log = tmp_path / "imports.txt"
    write_job(
        tmp_path,
        RECORD_IMPORT.format(log=str(log)) + BAD_SCRIPTS[mistake],
        files=8,
        concurrency=2,
    )
    checked = run_cli("validate", "pipeline.yml", cwd=tmp_path)
    assert checked.returncode == 2
    log.unlink()
    result = run_job(tmp_path)
    assert result.returncode == 2, result.stderr
    # The same error as validate's, once although each worker failed the same way.
    assert _errors(result.stderr) == _errors(checked.stderr) and len(_errors(checked.stderr)) == 1
    assert "Traceback (most recent call last)" not in result.stderr.replace(
        _traceback_of_user(checked.stderr), ""
    )
    assert "worker" in _imports(log) and "other" not in _imports(log)
    assert not result.run_dir.exists()  # nothing half-written: no run folder at all


def _traceback_of_user(stderr: str) -> str:
    """The user's own traceback that validate's message quotes (indented under it)."""
    return "\n".join(line for line in stderr.splitlines() if line.startswith("    "))


def test_a_later_steps_bad_script_is_refused_before_the_first_step_runs(tmp_path: Path) -> None:
    log = tmp_path / "imports.txt"
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "a.txt").write_text("a\n")
    src = tmp_path / "src"
    src.mkdir()
    (src / "good.py").write_text(
        RECORD_IMPORT.format(log=str(log)) + "def run(mb):\n    return mb\n"
    )
    (src / "bad.py").write_text("import parajob_no_such_module_xyz\ndef run(mb):\n    return mb\n")
    steps = ""
    for name, script in (("first", "good.py"), ("second", "bad.py")):
        steps += textwrap.dedent(
            f"""\
              {name}:
                type: parallel
                inputs:
                  data: {{type: uri_folder, path: ./data}}
                input_data: ${{{{inputs.data}}}}
                task: {{type: run_function, code: ./src, entry_script: {script}}}
            """
        )
    (tmp_path / "pipeline.yml").write_text("type: pipeline\njobs:\n" + textwrap.indent(steps, "  "))
    result = run_job(tmp_path)
    assert result.returncode == 2, result.stderr
    assert "jobs.second.task.entry_script" in result.stderr
    assert "ModuleNotFoundError" in result.stderr
    assert _imports(log) == []  # the first step never started
    assert not result.run_dir.exists()


def test_an_import_failing_only_in_a_replacement_worker_is_an_init_failure(
    tmp_path: Path,
) -> None:
    """Once mini-batches have run, a worker that cannot import the script is an ordinary
    init failure (counted, its traceback in the logs), not a refusal of the whole run:
    the results so far stand."""
    marker = tmp_path / "ran-once"
    script = f"""
import os
if os.path.exists({str(marker)!r}):
    raise ImportError("the model went away")

def run(mini_batch):
    open({str(marker)!r}, "w").close()
    return [os.path.basename(p) for p in mini_batch]
"""
    write_job(tmp_path, script, files=4, mini_batch_size=1, concurrency=1)
    run_dir = tmp_path / "run"
    proc = run_cli(
        "run",
        "pipeline.yml",
        "--run-dir",
        str(run_dir),
        "--max-tasks-per-worker",
        "1",
        cwd=tmp_path,
    )
    assert proc.returncode == 1, proc.stderr
    reason = (run_dir / "step" / "logs" / "job_result.txt").read_text()
    assert "init() failed" in reason, reason
    assert "ImportError: the model went away" in reason


def test_ctrl_c_while_the_workers_import_the_script_leaves_a_resumable_run(
    tmp_path: Path,
) -> None:
    """The import is part of the workers' start now: a Ctrl-C during it interrupts the
    step like one during init() (exit 130), and --resume finishes it, every row once."""
    import os
    import signal
    import subprocess
    import sys
    import time

    mark = tmp_path / "mark"
    script = f"""
import os, time
if not os.path.exists({str(mark)!r}):
    open({str(mark)!r}, "w").close()
    time.sleep(60)

def run(mini_batch):
    return [os.path.basename(p) for p in mini_batch]
"""
    write_job(tmp_path, script, files=4, mini_batch_size=1, concurrency=1)
    proc = subprocess.Popen(
        [sys.executable, "-m", "parajob", "run", "pipeline.yml", "--run-dir", "run"],
        cwd=tmp_path,
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=dict(os.environ),
    )
    deadline = time.monotonic() + 120
    while not mark.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    assert mark.exists(), proc.communicate()
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, out + err
    assert "Traceback" not in err, err
    resumed = run_cli("run", "--resume", "run", cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    rows = (tmp_path / "run" / "step" / "outputs" / "out").read_text().splitlines()
    assert sorted(rows) == [f"f{i:05d}.txt" for i in range(4)]
