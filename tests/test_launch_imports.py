"""What `parajob run` imports before its first workers fork (issue 13: launch -> first run()).

The workers are forked from the driver, so every module the driver imported before the
fork is the first mini-batch's cost, whether or not a worker uses it. These tests pin
the modules that `run` no longer imports before the first fork: the resource monitor's
psutil (the monitor starts right after the first workers), the profiler's pstats, the
Dask executor's distributed, results, command steps, the serial executor, socket, secrets,
difflib, numpy.ma and numpy.char (numpy 2 imports them lazily).
Each worker records sys.modules as it imports the entry script, i.e. what it inherited.
"""

from __future__ import annotations

import csv
import json
import resource
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import RUN_TIMEOUT_S, JobRun, run_job, write_job

from parajob.runtime import fd_guard

# At import in a worker (the token is exported to workers only: executors/reaping.py), one
# JSON line: the modules the worker inherited from the driver. The first mini-batch then
# waits (deadline 60 s) until the monitor, when on, has sampled the workers.
RECORD_MODULES = """
import json, os, sys, time
from pathlib import Path

if os.environ.get("PARAJOB_RUN_TOKEN"):
    with open({log!r}, "a", encoding="utf-8") as _f:
        _f.write(json.dumps(sorted(sys.modules)) + "\\n")

def run(mini_batch):
    samples = Path({samples!r})
    deadline = time.monotonic() + 60
    while {wait} and time.monotonic() < deadline:
        if samples.exists() and len(samples.read_text().splitlines()) > 1:
            break
        time.sleep(0.05)
    return [os.path.basename(p) for p in mini_batch]
"""

# Not needed by `parajob run` of a parallel step before its first worker runs user code.
NOT_BEFORE_THE_FORK = (
    "psutil",  # the resource monitor: started after the first forks
    "pstats",  # --profiling_module: only when a worker writes its stats
    "distributed",  # the Dask executor: only for a Dask compute
    "parajob.executors.dask",
    "parajob.results",  # the RunResult: made after the steps ran
    "parajob.runtime.command_step",  # command steps only
    "parajob.executors.serial",  # --serial only
    "bdb",
    "parajob.show",  # `parajob show`, the HTML report
    "socket",
    "secrets",
    "_hashlib",  # OpenSSL's: parajob's fingerprints need BLAKE2 only (_blake2)
    "difflib",  # a message's "did you mean"
    "numpy.ma",  # numpy 2 imports these two lazily; numpy 1 with numpy itself
    "numpy.char",
)


def _not_before_the_fork() -> set[str]:
    """NOT_BEFORE_THE_FORK less what this interpreter (site, sitecustomize) and a bare
    ``import numpy`` import by themselves here."""
    probe = "import json, sys, numpy; print(json.dumps(sorted(sys.modules)))"
    bare = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=RUN_TIMEOUT_S
    )
    assert bare.returncode == 0, bare.stderr
    return set(NOT_BEFORE_THE_FORK) - set(json.loads(bare.stdout))


def _run_recording(tmp_path: Path, program_arguments: str, wait: bool) -> tuple[JobRun, Path]:
    log = tmp_path / "modules.jsonl"
    samples = tmp_path / "run" / "step" / "logs" / "sys" / "perf" / "node000" / "processes.csv"
    script = RECORD_MODULES.format(log=str(log), samples=str(samples), wait=wait)
    write_job(
        tmp_path,
        script,
        files=4,
        mini_batch_size=1,
        concurrency=2,
        program_arguments=program_arguments,
    )
    job = run_job(tmp_path)
    assert job.returncode == 0, job.stderr
    assert sorted(job.output().splitlines()) == [f"f{i:05d}.txt" for i in range(4)]
    return job, log


def _inherited(log: Path) -> list[set[str]]:
    return [set(json.loads(line)) for line in log.read_text(encoding="utf-8").splitlines()]


@pytest.mark.parametrize(
    "program_arguments",
    ["", "--resource_monitor_interval 0", "--profiling_module cProfile"],
    ids=["defaults (monitor every 600 s)", "monitor off", "profiling on"],
)
def test_the_first_workers_inherit_none_of_what_only_later_parts_need(
    tmp_path: Path, program_arguments: str
) -> None:
    job, log = _run_recording(tmp_path, program_arguments, wait=False)
    workers = _inherited(log)
    assert len(workers) == 2  # the two first workers, no replacement
    unwanted = _not_before_the_fork()
    for modules in workers:
        assert "parajob.runtime.worker" in modules and "numpy" in modules  # the recording works
        assert sorted(modules & unwanted) == []
    if "profiling" in program_arguments:  # pstats still writes the stats at the worker's end
        texts = list((job.step_dir() / "logs" / "sys" / "profile" / "node000").glob("*.txt"))
        assert texts and all("cumulative" in t.read_text() for t in texts)


def test_the_monitor_still_samples_the_workers_it_started_after(tmp_path: Path) -> None:
    job, log = _run_recording(tmp_path, "--resource_monitor_interval 1", wait=True)
    for modules in _inherited(log):
        assert "psutil" not in modules
    perf = job.step_dir() / "logs" / "sys" / "perf" / "node000"
    with open(perf / "machine.csv", newline="", encoding="utf-8") as f:
        machine = list(csv.DictReader(f))
    with open(perf / "processes.csv", newline="", encoding="utf-8") as f:
        processes = list(csv.DictReader(f))
    assert machine and int(machine[0]["memory_used_bytes"]) > 0
    assert {p["worker"] for p in processes} <= {"process001", "process002"}
    assert processes and all(int(p["pid"]) > 0 and int(p["rss_bytes"]) > 0 for p in processes)


def test_a_command_step_still_gets_the_callers_descriptor_limit(tmp_path: Path) -> None:
    # `parajob run` grows its descriptor table before it imports numpy (fd_guard.grow_table):
    # that must not raise the soft RLIMIT_NOFILE a command step's program inherits (only
    # a parallel step's workers get it raised, for their high descriptors).
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    low = 1024
    if hard != resource.RLIM_INFINITY and hard < fd_guard.HIGH_FD + 512:
        pytest.skip("the hard limit leaves no room to raise the soft one")
    (tmp_path / "limit.yml").write_text(
        "type: command\n"
        "outputs:\n"
        "  limit: {type: uri_file}\n"
        "command: ulimit -Sn > ${{outputs.limit}}\n",
        encoding="utf-8",
    )
    run = tmp_path / "run"
    proc = subprocess.run(
        [sys.executable, "-m", "parajob", "run", "limit.yml", "--run-dir", str(run)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT_S,
        preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_NOFILE, (low, hard)),
    )
    assert proc.returncode == 0, proc.stderr
    assert (run / "limit" / "outputs" / "limit").read_text().strip() == str(low)
