"""Shared helpers: write a pipeline + entry script into a folder and run parajob on it.

Jobs run through the real CLI in a subprocess (``python -m parajob``), so each test sees
what a user sees: exit code, terminal text, files on disk. Every run has a timeout: a hang
fails the test (with the output so far) instead of hanging CI.
"""

from __future__ import annotations

import fcntl
import os
import pty
import select
import struct
import subprocess
import sys
import termios
import textwrap
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

RUN_TIMEOUT_S = 180

# A developer's own ~/.config/parajob/computes.yml must not send the tests' steps to a
# cluster: no computes file unless a test names one (tests/test_dask_compute.py does).
os.environ["PARAJOB_COMPUTES"] = ""


@dataclass
class JobRun:
    returncode: int
    stdout: str
    stderr: str
    run_dir: Path

    def step_dir(self, step: str = "step") -> Path:
        return self.run_dir / step

    def output(self, step: str = "step", name: str = "out") -> str:
        return (self.run_dir / step / "outputs" / name).read_text(encoding="utf-8")

    def job_result(self, step: str = "step") -> str:
        return (self.run_dir / step / "logs" / "job_result.txt").read_text(encoding="utf-8")


def run_cli(
    *args: str, cwd: Path, timeout: float = RUN_TIMEOUT_S, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    full_env = {**os.environ, **(env or {})}
    try:
        return subprocess.run(
            [sys.executable, "-m", "parajob", *args],
            cwd=cwd,
            env=full_env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
    except subprocess.TimeoutExpired as exc:
        pytest.fail(
            f"parajob {' '.join(args)} did not finish in {timeout}s\n"
            f"stdout:\n{exc.stdout}\nstderr:\n{exc.stderr}"
        )


def make_files(folder: Path, n: int, nested: bool = False) -> list[Path]:
    paths = []
    for i in range(n):
        sub = folder / f"d{i % 7}" if nested else folder
        sub.mkdir(parents=True, exist_ok=True)
        path = sub / f"f{i:05d}.txt"
        path.write_text(f"item {i}\n", encoding="utf-8")
        paths.append(path)
    return sorted(paths, key=lambda p: str(p.relative_to(folder)))


def write_job(
    tmp: Path,
    script: str,
    *,
    files: int = 20,
    mini_batch_size: int | str = 3,
    concurrency: int = 2,
    instances: int = 1,
    extra_step: str = "",
    program_arguments: str = "",
    append_row: bool = True,
    max_retries: int = 2,
    timeout: int = 60,
    nested: bool = False,
) -> Path:
    """A one-step pipeline `step` over `files` text files; returns the pipeline path."""
    make_files(tmp / "data", files, nested=nested)
    (tmp / "src").mkdir(exist_ok=True)
    (tmp / "src" / "entry.py").write_text(textwrap.dedent(script), encoding="utf-8")
    append = "      append_row_to: ${{outputs.out}}\n" if append_row else ""
    pipeline = f"""\
type: pipeline
jobs:
  step:
    type: parallel
    inputs:
      data:
        type: uri_folder
        path: ./data
    outputs:
      out:
        type: uri_file
    input_data: ${{{{inputs.data}}}}
    mini_batch_size: "{mini_batch_size}"
    resources:
      instance_count: {instances}
    max_concurrency_per_instance: {concurrency}
    retry_settings:
      max_retries: {max_retries}
      timeout: {timeout}
{textwrap.indent(textwrap.dedent(extra_step), "    ")}    task:
      type: run_function
      code: ./src
      entry_script: entry.py
      program_arguments: "{program_arguments}"
{append}"""
    path = tmp / "pipeline.yml"
    path.write_text(pipeline, encoding="utf-8")
    return path


def run_job(tmp: Path, pipeline: Path | None = None, timeout: float = RUN_TIMEOUT_S) -> JobRun:
    pipeline = pipeline or tmp / "pipeline.yml"
    run_dir = tmp / "run"
    proc = run_cli("run", str(pipeline), "--run-dir", str(run_dir), cwd=tmp, timeout=timeout)
    return JobRun(proc.returncode, proc.stdout, proc.stderr, run_dir)


ECHO_SCRIPT = """
import os

def run(mini_batch):
    return [os.path.basename(p) for p in mini_batch]
"""


def kills_driver_at(batch: int) -> str:
    """An entry script whose worker SIGKILLs the driver at mini-batch `batch`, on the first
    run only (a file beside the job marks it); the workers die with the driver (their
    parent-death signal). Every other mini-batch returns its files' names."""
    return f"""
import os, pathlib, signal
MARK = pathlib.Path(__file__).resolve().parent.parent / "killed"

def run(mini_batch, context):
    if context.minibatch_index == {batch} and not MARK.exists():
        MARK.touch()
        os.kill(os.getppid(), signal.SIGKILL)
    return [os.path.basename(p) for p in mini_batch]
"""


GUARD_S = 240  # no test may hang CI: after this, dump every thread's traceback and fail


@pytest.fixture(autouse=True)
def deadlock_guard():  # type: ignore[no-untyped-def]
    import faulthandler
    import signal

    def expire(signum, frame):  # type: ignore[no-untyped-def]
        faulthandler.dump_traceback(all_threads=True)
        raise TimeoutError(f"test still running after {GUARD_S}s (tracebacks dumped above)")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.alarm(GUARD_S)
    yield
    signal.alarm(0)
    signal.signal(signal.SIGALRM, previous)


def run_in_pty(cwd: Path, columns: int, *args: str) -> tuple[int, str]:
    """parajob on a pseudo-terminal of ``columns`` x 24: (exit status, all it wrote)."""
    pid, fd = pty.fork()
    if pid == 0:  # the child: its stdin/stdout/stderr are the terminal
        try:
            os.chdir(cwd)
            env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES")}
            env["TERM"] = "xterm-256color"
            os.execve(sys.executable, [sys.executable, "-m", "parajob", *args], env)
        finally:
            os._exit(127)
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", 24, columns, 0, 0))
    out = b""
    deadline = time.monotonic() + RUN_TIMEOUT_S
    while time.monotonic() < deadline:
        ready, _, _ = select.select([fd], [], [], 1.0)
        if not ready:
            continue
        try:
            data = os.read(fd, 65536)
        except OSError:  # EIO: the child closed the terminal
            break
        if not data:
            break
        out += data
    else:
        os.kill(pid, 9)
        pytest.fail(f"parajob did not finish in {RUN_TIMEOUT_S}s on the terminal:\n{out!r}")
    _, status = os.waitpid(pid, 0)
    os.close(fd)
    return os.waitstatus_to_exitcode(status), out.decode("utf-8", "replace")
