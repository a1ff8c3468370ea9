"""Running one ``type: command`` step: a shell runs the bound command once.

    <run>/<step>/code/            a copy of ``code`` (and a component's additional_includes):
                                  the working folder, as Azure's snapshot is
    <run>/<step>/outputs/<name>   outputs without a path (folders made before the command)
    <run>/<step>/logs/user/std_log.txt   everything the command printed (stdout + stderr)

The command runs under ``bash -c`` (``sh -c`` without bash) in its own process group, with
the current environment plus the step's ``environment_variables``; its output is copied to
the log and, line by line with the step's name in front, to our stderr. ``limits.timeout``
kills the whole group; so do Ctrl-C and SIGTERM (the step is then INTERRUPTED, and
``--resume`` runs it again). ``logs/job_result.txt`` and ``logs/job_result.json`` record
how it ended. Called by the runner, in the caller's thread; starts no thread (the parallel
steps that follow fork their workers from this process).
"""

from __future__ import annotations

import os
import selectors
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, TextIO

from parajob import terminal
from parajob.runtime.options import RunOptions, StopRequests
from parajob.runtime.report import step_status, write_step_result
from parajob.spec.bindings import default_output_path
from parajob.spec.model import CommandStep

__all__ = ["CommandOutcome", "run_command_step", "output_path", "finished_before"]

TAIL_LINES = 20
POLL_S = 0.25  # how often a running command's stop requests are looked at


@dataclass
class CommandOutcome:
    """How a command step ended; the CLI prints ``summary()``."""

    step: str
    succeeded: bool
    reason: str
    command: str
    log: Path
    outputs: dict[str, Path]
    seconds: float = 0.0
    tail: str = ""
    interrupted: bool = False
    cancelled: bool = False

    @property
    def status(self) -> str:
        return step_status(self.succeeded, self.interrupted, self.cancelled)

    def summary(self) -> str:
        lines = [
            f"step:                 {self.step} (command)",
            f"status:               {self.status}",
            f"reason:               {self.reason}",
            f"command:              {self.command}",
            f"elapsed:              {self.seconds:.2f} s",
            *(f"output {name + ':':<14}{path}" for name, path in self.outputs.items()),
            f"log:                  {self.log}",
        ]
        if self.tail and not self.succeeded:
            lines += ["", f"last lines of {self.log.name}:", self.tail.rstrip()]
        return "\n".join(lines) + "\n"


def output_path(step: CommandStep, run_dir: Path, name: str) -> Path:
    out = step.outputs[name]
    return out.path or default_output_path(run_dir, step.name, name)


def run_command_step(
    step: CommandStep,
    run_dir: Path,
    options: RunOptions | None = None,
    stream: TextIO | None = None,
) -> CommandOutcome:
    """Run the step to its end (or its timeout, or a stop request: a signal when the
    caller handles them, its cancel event). Never raises for the command's failure."""
    options = options or RunOptions()
    started = time.monotonic()
    root = run_dir / step.name
    log = root / "logs" / "user" / "std_log.txt"
    log.parent.mkdir(parents=True, exist_ok=True)
    work = _snapshot(step, root, run_dir)
    outputs = {name: output_path(step, run_dir, name) for name in step.outputs}
    for name, path in outputs.items():
        (path.parent if step.outputs[name].type == "uri_file" else path).mkdir(
            parents=True, exist_ok=True
        )
    shell = shutil.which("bash") or "/bin/sh"
    env = {**os.environ, **step.environment_variables}
    with open(log, "wb") as sink:
        proc = subprocess.Popen(
            [shell, "-c", step.command],
            cwd=work,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        # A signal kills the command at once (the loop then sees its output end); a cancel
        # is seen by the loop within POLL_S.
        with StopRequests(options, wake=lambda: _kill_group(proc, wait=False)) as stops:
            try:
                timed_out = _pump(
                    proc,
                    sink,
                    step.name,
                    step.timeout,
                    None if options.quiet else stream if stream is not None else sys.stderr,
                    stops,
                )
            except BaseException:
                _kill_group(proc)
                raise
    code = proc.returncode
    stopped = stops.requested()
    if stopped:
        reason = stopped.replace("interrupted by", "stopped by")
    elif timed_out:
        reason = f"killed after limits.timeout ({step.timeout} s)"
    elif code == 0:
        reason = "the command exited with code 0"
    elif code is not None and code < 0:
        reason = f"the command was killed by signal {signal.Signals(-code).name}"
    else:
        reason = f"the command exited with code {code}"
    ok = code == 0 and not timed_out and not stopped
    outcome = CommandOutcome(
        step.name,
        ok,
        reason,
        step.command,
        log,
        outputs,
        time.monotonic() - started,
        "" if ok else _tail(log),
        interrupted=bool(stopped),
        cancelled=stops.cancelled,
    )
    write_step_result(root / "logs" / "job_result.txt", outcome)  # and job_result.json
    return outcome


def finished_before(step: CommandStep, run_dir: Path) -> CommandOutcome | None:
    """The outcome of an earlier, successful run of this step in ``run_dir`` (for
    ``--resume``), else None."""
    root = run_dir / step.name
    try:
        text = (root / "logs" / "job_result.txt").read_text(encoding="utf-8")
    except OSError:
        return None
    if "status:               SUCCEEDED" not in text:
        return None
    outputs = {name: output_path(step, run_dir, name) for name in step.outputs}
    return CommandOutcome(
        step.name,
        True,
        "succeeded in an earlier run of this folder",
        step.command,
        root / "logs" / "user" / "std_log.txt",
        outputs,
    )


def _snapshot(step: CommandStep, root: Path, run_dir: Path) -> Path:
    """Copy ``code`` (and additional includes) to ``<run>/<step>/code``; the run folder
    itself is left out when it lies inside ``code`` (``code: ./`` with ``./runs``)."""
    work = root / "code"
    if work.exists():
        shutil.rmtree(work)
    skip = run_dir.resolve()

    def ignore(folder: str, names: list[str]) -> list[str]:
        return [
            n for n in names if n in ("__pycache__", ".git") or Path(folder, n).resolve() == skip
        ]

    if step.code is not None:
        shutil.copytree(step.code, work, symlinks=True, ignore=ignore)
    else:
        work.mkdir(parents=True)
    for extra in step.additional_includes:
        target = work / extra.name
        if extra.is_dir():
            shutil.copytree(extra, target, symlinks=True, ignore=ignore, dirs_exist_ok=True)
        else:
            shutil.copy2(extra, target)
    return work


def _pump(
    proc: subprocess.Popen[bytes],
    sink: BinaryIO,
    name: str,
    timeout: int | None,
    stream: TextIO | None,
    stops: StopRequests,
) -> bool:
    """Copy the command's output to the log and the terminal (None: not) until it exits;
    True when it ran past ``timeout`` and was killed. A stop request kills it."""
    assert proc.stdout is not None
    deadline = time.monotonic() + timeout if timeout else None
    fd = proc.stdout.fileno()
    pending = b""
    with selectors.DefaultSelector() as sel:
        sel.register(fd, selectors.EVENT_READ)
        while True:
            wait = POLL_S if deadline is None else min(max(deadline - time.monotonic(), 0), POLL_S)
            if not sel.select(wait):
                if stops.requested() is not None:
                    _kill_group(proc)
                elif deadline is not None and time.monotonic() >= deadline:
                    _kill_group(proc)
                    return True
                continue
            chunk = os.read(fd, 1 << 16)
            if not chunk:
                break
            sink.write(chunk)
            pending += chunk
            *lines, pending = pending.split(b"\n")
            if lines:  # the terminal copy is a courtesy: a failed write is dropped
                terminal.write(
                    stream,
                    "".join(f"[{name}] {line.decode('utf-8', 'replace')}\n" for line in lines),
                )
    if pending:
        terminal.write(stream, f"[{name}] {pending.decode('utf-8', 'replace')}\n")
    proc.stdout.close()
    proc.wait()
    return False


def _kill_group(proc: subprocess.Popen[bytes], wait: bool = True) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    if wait:
        proc.wait()


def _tail(log: Path) -> str:
    try:
        lines = log.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return ""
    return "\n".join(lines[-TAIL_LINES:])
