"""--profiling_module cProfile: each worker's run() calls profiled, a .prof and a text top 20
per worker process under logs/sys/profile/<node>/ (README)."""

from __future__ import annotations

import pstats
from pathlib import Path

from conftest import ECHO_SCRIPT, run_cli, run_job, write_job

SCRIPT = """
import os

def distinctive_work(paths):
    return [os.path.basename(p) for p in paths]

def run(mini_batch):
    return distinctive_work(mini_batch)
"""


def test_each_worker_writes_its_stats_and_top_20(tmp_path: Path) -> None:
    write_job(
        tmp_path,
        SCRIPT,
        files=12,
        mini_batch_size=2,
        concurrency=2,
        program_arguments="--profiling_module cProfile",
    )
    job = run_job(tmp_path)
    assert job.returncode == 0, job.stderr
    folder = job.step_dir() / "logs" / "sys" / "profile" / "node000"
    profs = sorted(folder.glob("process00*.prof"))
    assert [p.name.split(".")[0] for p in profs] == ["process001", "process002"]
    calls = 0
    for prof in profs:
        text = prof.with_suffix(".txt").read_text()
        assert "top 20 by cumulative time" in text
        ran = int(text.split(": ", 1)[1].split(" call")[0])
        calls += ran
        if not ran:  # the other worker took every mini-batch: an empty profile
            continue
        stats = pstats.Stats(str(prof))
        functions = {name for (_, _, name) in stats.stats}  # type: ignore[attr-defined]
        assert "distinctive_work" in functions and "run" in functions
        assert "init" not in functions
        assert "distinctive_work" in text
    assert calls == 6  # every mini-batch's run(), once (no retries here)
    assert job.output().splitlines() == [f"f{i:05d}.txt" for i in range(12)]


def test_no_profile_by_default(tmp_path: Path) -> None:
    write_job(tmp_path, ECHO_SCRIPT, files=2)
    job = run_job(tmp_path)
    assert job.returncode == 0, job.stderr
    assert not (job.step_dir() / "logs" / "sys" / "profile").exists()


def test_serial_says_it_does_not_profile(tmp_path: Path) -> None:
    pipeline = write_job(
        tmp_path, ECHO_SCRIPT, files=2, program_arguments="--profiling_module cProfile"
    )
    proc = run_cli(
        "run", str(pipeline), "--run-dir", str(tmp_path / "run"), "--serial", cwd=tmp_path
    )
    assert proc.returncode == 0, proc.stderr
    assert "--profiling_module cProfile has no effect with --serial" in proc.stderr
