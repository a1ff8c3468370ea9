"""--resource_monitor_interval: CSV samples under logs/sys/perf/<node>/ (README "Resource
monitor"), taken from the driver's engine loop, none at 0, and no hang while the engine
forks replacement workers under a monitor sampling at every turn it can."""

from __future__ import annotations

import csv
import os
from pathlib import Path

import pytest
from conftest import run_cli, run_job, write_job

from parajob.runtime.monitor import COLUMNS

# The first mini-batch waits (deadline: 60 s) until the monitor has sampled the workers,
# so the run is certain to hold samples without sleeping a guessed time.
WAIT_FOR_A_SAMPLE = """
import os, time
from pathlib import Path

def run(mini_batch):
    step = Path(os.getcwd()).parents[3]  # <run>/<step>/sys/work/<node>/<process>
    samples = step / "logs" / "sys" / "perf" / "node000" / "processes.csv"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if samples.exists() and len(samples.read_text().splitlines()) > 1:
            break
        time.sleep(0.05)
    return [os.path.basename(p) for p in mini_batch]
"""


def rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def header(path: Path) -> tuple[str, ...]:
    with open(path, newline="", encoding="utf-8") as f:
        return tuple(next(csv.reader(f)))


def test_interval_1_writes_the_documented_columns_per_node(tmp_path: Path) -> None:
    write_job(
        tmp_path,
        WAIT_FOR_A_SAMPLE,
        files=8,
        mini_batch_size=2,
        concurrency=2,
        instances=2,
        program_arguments="--resource_monitor_interval 1",
    )
    job = run_job(tmp_path)
    assert job.returncode == 0, job.stderr
    perf = job.step_dir() / "logs" / "sys" / "perf"
    assert sorted(p.name for p in perf.iterdir()) == ["node000", "node001"]
    for node in ("node000", "node001"):
        machine, processes = perf / node / "machine.csv", perf / node / "processes.csv"
        assert header(machine) == COLUMNS["machine"]
        assert header(processes) == COLUMNS["processes"]
        sample = rows(machine)[0]
        assert 0 <= float(sample["cpu_percent"]) and int(sample["memory_used_bytes"]) > 0
        assert int(sample["disk_free_bytes"]) > 0
    workers = rows(perf / "node000" / "processes.csv")
    assert {w["worker"] for w in workers} <= {"process001", "process002"}
    assert all(int(w["pid"]) > 0 and int(w["rss_bytes"]) > 0 for w in workers)
    # No GPU library on this machine (or no GPU): no gpu.csv rather than an empty one.
    gpu = perf / "node000" / "gpu.csv"
    if gpu.exists():
        assert header(gpu) == COLUMNS["gpu"]
    # The README documents exactly these columns.
    readme = (Path(__file__).parents[1] / "README.md").read_text(encoding="utf-8")
    for kind, columns in COLUMNS.items():
        assert f"`{kind}.csv`: " + ", ".join(columns) in readme, kind


def test_interval_0_writes_no_perf_files(tmp_path: Path) -> None:
    write_job(
        tmp_path,
        "def run(mb):\n    return mb\n",
        files=4,
        program_arguments="--resource_monitor_interval 0",
    )
    job = run_job(tmp_path)
    assert job.returncode == 0, job.stderr
    assert not (job.step_dir() / "logs" / "sys" / "perf").exists()


def test_replacement_workers_forked_while_the_monitor_samples_do_not_hang(tmp_path: Path) -> None:
    # --max-tasks-per-worker 1: every mini-batch ends with its worker recycled and a fresh
    # one forked, while the monitor (interval 0.001: at every checkpoint turn) samples.
    # Crashes (os._exit) on first attempts add replacements after deaths too.
    # Crash markers beside the data (absolute paths): each worker has its own cwd.
    script = """
    import os, time

    def run(mini_batch):
        marker = mini_batch[0] + ".crashed"
        if not os.path.exists(marker) and int(mini_batch[0][-6:-4]) % 3 == 0:
            open(marker, "w").close()
            os._exit(1)
        time.sleep(0.02)
        return [os.path.basename(p) for p in mini_batch]
    """
    pipeline = write_job(
        tmp_path,
        script,
        files=40,
        mini_batch_size=1,
        concurrency=3,
        max_retries=3,
        program_arguments="--resource_monitor_interval 0.001",
    )
    proc = run_cli(
        "run",
        str(pipeline),
        "--run-dir",
        str(tmp_path / "run"),
        "--max-tasks-per-worker",
        "1",
        cwd=tmp_path,
        timeout=150,
    )
    assert proc.returncode == 0, proc.stderr
    samples = rows(
        tmp_path / "run" / "step" / "logs" / "sys" / "perf" / "node000" / "processes.csv"
    )
    assert samples, "the monitor took no sample of the workers"
    assert len({s["process"] for s in samples}) > 1  # it saw replacements come and go


def test_a_flag_read_but_not_acted_upon_is_warned_about_by_name(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from parajob.spec import arguments

    # None is left today; the mechanism stays for a flag a later Azure runtime adds.
    assert arguments.NOT_IMPLEMENTED == frozenset()
    monkeypatch.setattr(arguments, "NOT_IMPLEMENTED", frozenset({"profiling_module"}))
    args, problems = arguments.read_runtime_args(["--profiling_module", "cProfile", "--x", "1"])
    assert args.profiling_module == "cProfile"
    assert [(p.token, p.severity) for p in problems] == [("--profiling_module", "warning")]
    assert "'--profiling_module' is accepted but not implemented" in problems[0].message


def test_the_three_monitoring_flags_are_honoured_without_a_warning(tmp_path: Path) -> None:
    write_job(
        tmp_path,
        "def run(mb):\n    return mb\n",
        files=2,
        program_arguments="--resource_monitor_interval 5 --copy_logs_to_parent True "
        "--profiling_module cProfile",
    )
    job = run_job(tmp_path)
    assert job.returncode == 0, job.stderr
    assert "warning" not in job.stderr.lower()
    logs = job.step_dir() / "logs" / "sys"
    assert (logs / "perf" / "node000" / "machine.csv").exists()
    assert (logs / "profile" / "node000").is_dir()
    assert (job.run_dir / "logs" / "step" / "job_result.txt").exists()


FAKE_PYNVML = """
class _Util:
    gpu = 37

class _Memory:
    used, total = 1024, 4096

def nvmlInit(): pass
def nvmlShutdown(): pass
def nvmlDeviceGetCount(): return 2
def nvmlDeviceGetHandleByIndex(i): return i
def nvmlDeviceGetUtilizationRates(handle): return _Util()
def nvmlDeviceGetMemoryInfo(handle): return _Memory()
"""


def test_gpu_rows_come_from_nvidia_ml_py_when_a_gpu_is_present(tmp_path: Path) -> None:
    # A stand-in for nvidia-ml-py's pynvml reporting two GPUs (no GPU on CI machines).
    fake = tmp_path / "fake_nvml"
    fake.mkdir()
    (fake / "pynvml.py").write_text(FAKE_PYNVML)
    pipeline = write_job(
        tmp_path,
        WAIT_FOR_A_SAMPLE,
        files=2,
        mini_batch_size=1,
        concurrency=1,
        program_arguments="--resource_monitor_interval 1",
    )
    path = os.pathsep.join([str(fake), os.environ.get("PYTHONPATH", "")])
    proc = run_cli(
        "run",
        str(pipeline),
        "--run-dir",
        str(tmp_path / "run"),
        cwd=tmp_path,
        env={"PYTHONPATH": path},
    )
    assert proc.returncode == 0, proc.stderr
    gpu = tmp_path / "run" / "step" / "logs" / "sys" / "perf" / "node000" / "gpu.csv"
    assert header(gpu) == COLUMNS["gpu"]
    samples = rows(gpu)
    assert {s["gpu"] for s in samples} == {"0", "1"}
    assert all(
        (s["utilization_percent"], s["memory_used_bytes"], s["memory_total_bytes"])
        == ("37", "1024", "4096")
        for s in samples
    )
