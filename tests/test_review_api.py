"""A user's-eye review of parajob.run, RunResult, --serial and the CLI (issue 9).

Each test is a problem found by using the feature as a user would, run through real
processes and real files (tests/conftest.py), and fails without its fix.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from conftest import RUN_TIMEOUT_S, write_job

BREAKPOINT_SCRIPT = """
    import os
    def run(mini_batch):
        here = len(mini_batch)
        breakpoint()
        return [os.path.basename(p) for p in mini_batch]
"""


def _serial_under_pdb(tmp: Path, keys: str, *args: str) -> subprocess.CompletedProcess[str]:
    """parajob run --serial with pdb driven through a pipe (the keys are pdb commands)."""
    return subprocess.run([sys.executable, "-m", "parajob", "run", "pipeline.yml", "--run-dir",
                           "run", "--serial", *args], cwd=tmp, input=keys, text=True,
                          capture_output=True, timeout=RUN_TIMEOUT_S)


# ---- pdb's quit in --serial -----------------------------------------------------------


def test_quitting_pdb_in_serial_stops_the_step_as_interrupted_and_resumes(tmp_path: Path) -> None:
    # `q` at the pdb prompt is "stop": it must not count as run() raising (a failed try,
    # retried: the prompt came back once per try and mini-batch) and fail the job.
    write_job(tmp_path, BREAKPOINT_SCRIPT, files=4, mini_batch_size=1)
    proc = _serial_under_pdb(tmp_path, "p here\nq\n")
    assert proc.returncode == 130, proc.stdout + proc.stderr
    assert proc.stdout.count("(Pdb)") == 2, proc.stdout  # "p here", then "q": one prompt
    text = (tmp_path / "run" / "step" / "logs" / "job_result.txt").read_text()
    assert "interrupted" in text and "failed attempts:      0" in text, text
    assert "BdbQuit" not in proc.stderr
    resumed = _serial_under_pdb(tmp_path, "c\n" * 4, "--resume", "run")
    # (--resume with a PIPELINE given as well: the run folder's own pipeline is used)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert (tmp_path / "run" / "step" / "outputs" / "out").read_text().split() == \
        [f"f{i:05d}.txt" for i in range(4)]
