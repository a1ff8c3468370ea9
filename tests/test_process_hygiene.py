"""No process outlives its job; user code cannot corrupt the spools; a refused fork() is an
answer, not a traceback (issue 8: "children outlive the job", "user code can corrupt the
spools", "a failed fork()").

Real processes and signals throughout: entry scripts start helpers (subprocess.Popen, a
setsid'd double-forked daemon) and write their pids to a marker folder; the tests then poll,
with a deadline, until none of those pids is alive.
"""

from __future__ import annotations

import os
import resource
import signal
import subprocess
import sys
import textwrap
import time
import zlib
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from conftest import run_cli, run_job, write_job

from parajob import _core
from parajob.runtime.spool import HEADER, MAGIC

NAMES = [f"f{i:05d}.txt" for i in range(12)]
DEADLINE_S = 60.0  # polls give up after this; a pass takes far less

# init() starts a helper "server"; run() starts, once per worker, a setsid'd daemon made by
# a double fork (no exec: it keeps the worker's memory) and a setsid'd exec'd process.
# Every pid goes to MARKERS/pids/<pid>. Optionally the driver gets KILL_SIGNAL at KILL_AT,
# or every run() raises (RAISE: a limit is exceeded).
HELPERS = """
import os, signal, subprocess, time
from azureml_user.parallel_run import EntryScript
MARKERS = os.environ["MARKERS"]
started = False

def note(pid):
    os.makedirs(os.path.join(MARKERS, "pids"), exist_ok=True)
    open(os.path.join(MARKERS, "pids", str(pid)), "w").close()

def init():
    note(subprocess.Popen(["sleep", "600"]).pid)
    open(os.path.join(MARKERS, "token"), "w").write(os.environ.get("PARAJOB_RUN_TOKEN", ""))

def daemon():
    read, write = os.pipe()
    if os.fork() == 0:
        os.setsid()
        if os.fork() == 0:
            note(os.getpid())
            os.write(write, b"x")
            time.sleep(600)
        os._exit(0)
    os.read(read, 1)  # the grandchild has written its pid
    note(subprocess.Popen(["sleep", "600"], start_new_session=True).pid)

def run(mini_batch, context):
    global started
    if not started:
        started = True
        daemon()
    kill_at = int(os.environ.get("KILL_AT", "-1"))
    marker = os.path.join(MARKERS, "killed")
    if context.minibatch_index == kill_at and not os.path.exists(marker):
        open(marker, "w").close()
        os.kill(os.getppid(), getattr(signal, os.environ["KILL_SIGNAL"]))  # the driver
    if os.environ.get("RAISE"):
        raise RuntimeError("injected")
    return [os.path.basename(p) for p in mini_batch]
"""


def _alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_bytes()
    except OSError:
        return False
    return stat[stat.rfind(b")") + 2 :][:1] not in (b"Z", b"X")  # a zombie is dead


def _wait_until(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + DEADLINE_S
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"still not true after {DEADLINE_S:g} s: {what}")
        time.sleep(0.05)


def _pids(markers: Path) -> list[int]:
    folder = markers / "pids"
    return sorted(int(p.name) for p in folder.iterdir()) if folder.exists() else []


def _assert_all_die(pids: list[int]) -> None:
    try:
        _wait_until(
            lambda: not any(_alive(p) for p in pids),
            f"processes {[p for p in pids if _alive(p)]} are alive",
        )
    finally:  # never leave sleepers behind, whatever the outcome
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass


def _env(tmp: Path, extra: str = "") -> str:
    (tmp / "markers").mkdir(exist_ok=True)
    return f"environment_variables:\n  MARKERS: {tmp / 'markers'}\n{extra}"


# ---- no process outlives its job -----------------------------------------------------------


def test_what_init_and_run_start_dies_when_the_job_ends(tmp_path: Path) -> None:
    write_job(tmp_path, HELPERS, files=12, mini_batch_size=1, extra_step=_env(tmp_path))
    result = run_job(tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.output().splitlines() == NAMES
    pids = _pids(tmp_path / "markers")
    assert len(pids) >= 3  # init's helper, the daemon, the setsid'd sleep of one worker
    _assert_all_die(pids)
    assert len((tmp_path / "markers" / "token").read_text()) == 32  # PARAJOB_RUN_TOKEN


@pytest.mark.parametrize("end", ["ctrl_c", "limit_exceeded"])
def test_what_init_and_run_start_dies_when_the_job_stops_early(tmp_path: Path, end: str) -> None:
    extra = "  KILL_AT: '5'\n  KILL_SIGNAL: SIGINT\n" if end == "ctrl_c" else "  RAISE: '1'\n"
    write_job(
        tmp_path,
        HELPERS,
        files=12,
        mini_batch_size=1,
        extra_step=_env(tmp_path, extra) + "mini_batch_error_threshold: 0\n",
    )
    result = run_job(tmp_path)
    assert result.returncode == (130 if end == "ctrl_c" else 1), result.stderr
    _assert_all_die(_pids(tmp_path / "markers"))


def test_what_init_and_run_start_dies_when_the_driver_is_sigkilled(tmp_path: Path) -> None:
    write_job(
        tmp_path,
        HELPERS,
        files=40,
        mini_batch_size=1,
        extra_step=_env(tmp_path, "  KILL_AT: '20'\n  KILL_SIGNAL: SIGKILL\n"),
    )
    first = run_job(tmp_path)
    assert first.returncode == -signal.SIGKILL, first.stderr
    pids = _pids(tmp_path / "markers")
    assert len(pids) >= 3
    _assert_all_die(pids)
    resumed = run_cli("run", "--resume", "run", cwd=tmp_path)  # and the run still finishes
    assert resumed.returncode == 0, resumed.stderr
    assert first.output().splitlines() == [f"f{i:05d}.txt" for i in range(40)]
    _assert_all_die(_pids(tmp_path / "markers"))


IMPORT_STARTS_A_GRANDCHILD = """
import os, subprocess
# Inherits the probe's stdout and stderr: a check that reads them to EOF would wait 600 s.
child = subprocess.Popen(["sleep", "600"])
open(os.path.join(os.environ["MARKERS"], "grandchild"), "w").write(str(child.pid))

def run(mini_batch):
    return mini_batch
"""


def test_validate_does_not_wait_for_a_grandchild_of_the_import_and_kills_it(tmp_path: Path) -> None:
    write_job(tmp_path, IMPORT_STARTS_A_GRANDCHILD, files=2, extra_step=_env(tmp_path))
    (tmp_path / "tmp").mkdir()
    proc = run_cli(
        "validate",
        "pipeline.yml",
        cwd=tmp_path,
        timeout=120,  # a hang fails
        env={"TMPDIR": str(tmp_path / "tmp")},
    )
    assert proc.returncode == 0, proc.stderr
    pid = int((tmp_path / "markers" / "grandchild").read_text())
    _assert_all_die([pid])
    assert list((tmp_path / "tmp").iterdir()) == []  # the probe's folder is gone


def test_the_import_probe_dies_with_a_sigkilled_validate(tmp_path: Path) -> None:
    # ... and so does what the import started: a helper process in the probe's group.
    script = """
    import os, subprocess, time
    helper = subprocess.Popen(["sleep", "600"])
    open(os.path.join(os.environ["MARKERS"], "helper"), "w").write(str(helper.pid))
    open(os.path.join(os.environ["MARKERS"], "probe"), "w").write(str(os.getpid()))
    time.sleep(600)
    def run(mini_batch):
        return mini_batch
    """
    write_job(tmp_path, script, files=2, extra_step=_env(tmp_path))
    marker = tmp_path / "markers" / "probe"
    validate = subprocess.Popen(
        [sys.executable, "-m", "parajob", "validate", "pipeline.yml"],
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        _wait_until(
            lambda: marker.exists() and marker.read_text() != "", "the probe imported the script"
        )
        probe = int(marker.read_text())
        helper = int((tmp_path / "markers" / "helper").read_text())
    finally:
        validate.kill()
        validate.wait()
    _assert_all_die([probe, helper])


# ---- user code cannot corrupt the spools ---------------------------------------------------

SCRIBBLE = {
    "garbage": """
    for fd in range(3, 256):
        try:
            os.write(fd, b"garbage that is not a spool record")
        except OSError:
            pass
""",
    "dup2": """
    null = os.open("/dev/null", os.O_WRONLY)
    for fd in range(3, 256):
        if fd != null:
            try:
                os.dup2(null, fd)
            except OSError:
                pass
""",
}

SCRIBBLER = """
import os, signal
from azureml_user.parallel_run import EntryScript

def run(mini_batch, context):
{scribble}
    marker = os.path.join(os.environ["MARKERS"], "killed")
    if context.minibatch_index == int(os.environ["KILL_AT"]) and not os.path.exists(marker):
        open(marker, "w").close()
        os.kill(os.getppid(), signal.SIGKILL)  # the driver
    return [os.path.basename(p) for p in mini_batch]
"""


@pytest.mark.parametrize("how", sorted(SCRIBBLE))
def test_run_scribbling_over_inherited_fds_loses_no_row(tmp_path: Path, how: str) -> None:
    script = SCRIBBLER.format(scribble=textwrap.indent(textwrap.dedent(SCRIBBLE[how]), "    "))
    write_job(
        tmp_path,
        script,
        files=12,
        mini_batch_size=1,
        extra_step=_env(tmp_path, "  KILL_AT: '-1'\n"),
    )
    result = run_job(tmp_path)
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    assert result.output().splitlines() == NAMES  # every row once, in order
    assert "12 total, 12 completed, 0 failed" in result.job_result()


@pytest.mark.parametrize("how", sorted(SCRIBBLE))
def test_run_scribbling_over_inherited_fds_then_a_killed_driver_resumes(
    tmp_path: Path, how: str
) -> None:
    script = SCRIBBLER.format(scribble=textwrap.indent(textwrap.dedent(SCRIBBLE[how]), "    "))
    write_job(
        tmp_path,
        script,
        files=40,
        mini_batch_size=1,
        extra_step=_env(tmp_path, "  KILL_AT: '25'\n"),
    )
    first = run_job(tmp_path)
    assert first.returncode == -signal.SIGKILL, first.stderr
    resumed = run_cli("run", "--resume", "run", cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    assert "Traceback" not in resumed.stderr
    assert first.output().splitlines() == [f"f{i:05d}.txt" for i in range(40)]


@pytest.mark.skipif(
    resource.getrlimit(resource.RLIMIT_NOFILE)[1] < 10_256,
    reason="the hard RLIMIT_NOFILE leaves no room at 10000",
)
def test_a_workers_result_files_sit_at_descriptors_10000_and_up(tmp_path: Path) -> None:
    script = """
    import os
    def run(mini_batch):
        ours = []
        for fd in os.listdir("/proc/self/fd"):
            try:
                target = os.readlink(f"/proc/self/fd/{fd}")
            except OSError:
                continue
            if target.endswith((".spool", ".csv")) or "eventfd" in target:
                ours.append(int(fd))
        return [f"{os.path.basename(p)} {min(ours)} {len(ours)}" for p in mini_batch]
    """
    write_job(tmp_path, script, files=2, mini_batch_size=1, concurrency=1)
    result = run_job(tmp_path)
    assert result.returncode == 0, result.stderr
    for line in result.output().splitlines():
        _, lowest, count = line.split()
        assert int(lowest) >= 10_000 and int(count) == 3  # spool, csv part, eventfd


def test_a_record_that_does_not_validate_is_discarded_and_run_again(tmp_path: Path) -> None:
    # Finds the spool through /proc/self/fd (no descriptor number is out of reach of that)
    # and appends garbage once: the records published after it no longer check out.
    script = """
    import os
    def run(mini_batch):
        marker = os.path.join(os.environ["MARKERS"], "scribbled")
        if mini_batch[0].endswith("f00004.txt") and not os.path.exists(marker):
            open(marker, "w").close()
            for fd in os.listdir("/proc/self/fd"):
                try:
                    if os.readlink(f"/proc/self/fd/{fd}").endswith(".spool"):
                        os.write(int(fd), b"garbage")
                except OSError:
                    pass
        return [os.path.basename(p) for p in mini_batch]
    """
    write_job(tmp_path, script, files=12, mini_batch_size=1, extra_step=_env(tmp_path))
    result = run_job(tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.output().splitlines() == NAMES
    report = result.step_dir() / "logs" / "sys" / "job_report" / "processed_mini-batches.csv"
    assert ",corrupt_record," in report.read_text()
    assert "did not validate (CRC32)" in (result.step_dir() / "logs" / "job_error.txt").read_text()


def test_spool_records_carry_zlibs_crc32_and_the_checker_refuses_any_damage(tmp_path: Path) -> None:
    def record(batch: int, payload: bytes) -> bytes:
        head = HEADER.pack(MAGIC, 0, batch, 0, len(payload), 0, 0)[:24]
        return (
            HEADER.pack(MAGIC, 0, batch, 0, len(payload), zlib.crc32(payload, zlib.crc32(head)), 0)
            + payload
        )

    records = [record(b, f"row {b}\n".encode() * (b + 1)) for b in range(5)]
    spool = tmp_path / "process000001.spool"
    spool.write_bytes(b"".join(records))
    offsets = np.cumsum([0] + [len(r) for r in records[:-1]]).astype(np.uint64)
    lengths = np.array([len(r) for r in records], dtype=np.uint64)
    batches = np.arange(5, dtype=np.uint32)
    checker = _core.SpoolChecker()
    checker.add_spool(1, str(spool))
    ones = np.ones(5, dtype=np.uint32)
    assert checker.check(batches, ones, offsets, lengths).tolist() == [True] * 5
    data = bytearray(spool.read_bytes())
    data[int(offsets[2]) + HEADER.size] ^= 0x01  # one bit of mini-batch 2's payload
    spool.write_bytes(bytes(data))
    checker.close()
    assert checker.check(batches, ones, offsets, lengths).tolist() == [
        True,
        True,
        False,
        True,
        True,
    ]
    wrong_batch = batches[::-1].copy()
    assert checker.check(wrong_batch, ones, offsets, lengths).tolist()[0] is False
    assert checker.check(batches, ones + 1, offsets, lengths).tolist() == [False] * 5  # unknown


def test_resume_runs_again_a_journalled_record_that_no_longer_validates(tmp_path: Path) -> None:
    write_job(
        tmp_path,
        "import os\ndef run(mini_batch):\n    return [os.path.basename(p) for p in mini_batch]\n",
        files=12,
        mini_batch_size=1,
    )
    first = run_job(tmp_path)
    assert first.returncode == 0, first.stderr
    spools = sorted((first.step_dir() / "sys" / "spool").glob("*.spool"))
    for spool in spools:  # one flipped payload byte in each spool's first record (disk rot)
        data = bytearray(spool.read_bytes())
        if len(data) > 32:
            data[32] ^= 0xFF
            spool.write_bytes(bytes(data))
    resumed = run_cli("run", "--resume", "run", cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    assert "does not validate" in resumed.stderr and "they run again" in resumed.stderr
    assert first.output().splitlines() == NAMES


def test_a_record_corrupted_after_it_was_journalled_fails_the_merge_clearly(tmp_path: Path) -> None:
    # The last run() waits until mini-batch 0 is journalled, then flips a byte of its record
    # by the spool's path: no descriptor trick, the check at acceptance has already passed.
    script = """
    import os, time
    def target(fd):
        try:
            return os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            return ""
    # The worker's folder is <step>/sys/work/<node>/<process>; the journal <step>/sys/.
    JOURNAL = os.path.join(os.getcwd(), "..", "..", "..", "journal.bin")
    def init():
        global STARTED_AT  # the journal's size before anything was accepted
        STARTED_AT = os.path.getsize(JOURNAL)
    def run(mini_batch):
        if mini_batch[0].endswith("f00011.txt"):
            spool = next(t for t in map(target, os.listdir("/proc/self/fd"))
                         if t.endswith(".spool"))
            deadline = time.monotonic() + 60
            while os.path.getsize(JOURNAL) <= STARTED_AT and time.monotonic() < deadline:
                time.sleep(0.01)
            with open(spool, "r+b") as f:
                f.seek(32)
                byte = f.read(1)
                f.seek(32)
                f.write(bytes([byte[0] ^ 0xFF]))
        else:
            time.sleep(0.002)  # over 1 ms: each record is written at once, not gathered
        return [os.path.basename(p) for p in mini_batch]
    """
    write_job(tmp_path, script, files=12, mini_batch_size=1, concurrency=1)
    result = run_job(tmp_path)
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr
    text = result.job_result()
    assert "the output was not written" in text and "mini-batch 0" in text
    assert "process000001.spool" in text and "f00000.txt" in text
    assert "parajob run --resume" in text
    resumed = run_cli("run", "--resume", "run", cwd=tmp_path)  # re-checks, runs it again
    assert resumed.returncode == 0, resumed.stderr
    assert result.output().splitlines() == NAMES


# ---- a refused fork() ----------------------------------------------------------------------

# Loaded by every Python started with this folder first on PYTHONPATH: os.fork() works
# FORKS_ALLOWED times in the parajob process, then fails as under a process limit.
SITECUSTOMIZE = """
import errno, os
_allowed = int(os.environ.get("FORKS_ALLOWED", "-1"))
_real_fork = os.fork

def _fork():
    global _allowed
    if _allowed == 0:
        raise OSError(errno.EAGAIN, os.strerror(errno.EAGAIN))
    _allowed -= 1
    pid = _real_fork()
    if pid == 0:
        os.fork = _real_fork  # the child (a worker) is not limited
    return pid

if _allowed >= 0:
    os.fork = _fork
"""


def _run_with_forks(tmp: Path, allowed: int) -> subprocess.CompletedProcess[str]:
    site = tmp / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(SITECUSTOMIZE, encoding="utf-8")
    path = os.pathsep.join(p for p in (str(site), os.environ.get("PYTHONPATH", "")) if p)
    return run_cli(
        "run",
        "pipeline.yml",
        "--run-dir",
        "run",
        cwd=tmp,
        env={"PYTHONPATH": path, "FORKS_ALLOWED": str(allowed)},
    )


def test_no_worker_can_be_forked_stops_the_job_with_the_reason(tmp_path: Path) -> None:
    write_job(tmp_path, "def run(mini_batch):\n    return mini_batch\n", files=4, mini_batch_size=1)
    proc = _run_with_forks(tmp_path, 0)
    assert proc.returncode == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    text = (tmp_path / "run" / "step" / "logs" / "job_result.txt").read_text()
    assert (
        "could not start a worker process: [Errno 11] Resource temporarily unavailable "
        "(fork failed); lower max_concurrency_per_instance or raise the process limit"
    ) in text


def test_some_workers_refused_the_job_goes_on_with_fewer(tmp_path: Path) -> None:
    write_job(
        tmp_path,
        "import os\ndef run(mini_batch):\n    return [os.path.basename(p) for p in mini_batch]\n",
        files=12,
        mini_batch_size=1,
        concurrency=4,
    )
    proc = _run_with_forks(tmp_path, 2)  # the janitor and one worker
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    assert "could not start a worker process" in proc.stderr  # warned
    out = (tmp_path / "run" / "step" / "outputs" / "out").read_text().splitlines()
    assert out == NAMES
