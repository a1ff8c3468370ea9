"""Failures where the user looks: what a worker left in its own logs, brought into the
step's reports (job_error.txt, job_result.txt) and onto the terminal.

    worker: faulthandler -> logs/user/stderr/<node>/<proc>.stderr.txt  (a crash's Python stack)
            init_failed  -> logs/user/error/<node>/<proc>.txt          (init()'s traceback)
                 |  read by the engine once the worker is reaped (never on the hot path)
                 v
    crash_trace() / init_traceback() -> the attempt's error text / the step's first failure
                 -> job_error.txt, job_result.txt (Outcome.first_failure), and on stderr
                    (terminal_block, by the CLI) with the command that resumes the run
    split_crash() / error_line() -> the one line of a failed attempt (the error column of
                 processed_mini-batches.csv, Failure.message): a crash's reason, its trace
                 apart (Failure.traceback)

Invariant: reading a log never raises (a log the user's code removed or filled with
garbage gives no text), and what is read is bounded (TAIL_BYTES, MAX_LINES).
"""

from __future__ import annotations

import re
import shlex
import traceback
from collections.abc import Mapping
from pathlib import Path

TAIL_BYTES = 256 * 1024  # a crash's trace is at the end of its stderr log
MAX_LINES = 60  # of a trace kept in a report
# Signals on which faulthandler (enabled in every worker) dumps the Python stack.
FAULT_SIGNALS = ("SIGSEGV", "SIGFPE", "SIGABRT", "SIGBUS", "SIGILL")


def _tail(path: Path) -> str:
    try:
        with open(path, "rb") as f:
            f.seek(0, 2)
            size = f.tell()
            f.seek(max(0, size - TAIL_BYTES))
            return f.read().decode("utf-8", "replace")
    except OSError:
        return ""


def _cap(lines: list[str]) -> str:
    if len(lines) > MAX_LINES:
        lines = lines[:MAX_LINES] + [f"... ({len(lines) - MAX_LINES} more lines in the log)"]
    return "\n".join(lines).rstrip() + "\n"


def crash_trace(stderr_log: Path, why: str) -> str:
    """The Python stack faulthandler wrote to a crashed worker's stderr log, as text to
    append to the attempt's error ("" when ``why`` names no signal faulthandler handles,
    or the log has no trace: a SIGKILL leaves none)."""
    if not any(sig in why for sig in FAULT_SIGNALS):
        return ""
    text = _tail(stderr_log)
    start = text.rfind("Fatal Python error:")
    if start < 0:
        return ""
    lines = text[start:].splitlines()
    # Most recent call first: below the worker's entry frame is the driver that forked it.
    entry = next((i for i, ln in enumerate(lines) if ln.rstrip().endswith(" in worker_main")), None)
    if entry is not None:
        lines = lines[: entry + 1]
        # Then the worker's own frames that called run() or init(): left out, as from a
        # traceback (user_traceback), unless no frame above them is the user's.
        ours = f'File "{_PACKAGE}'
        last = entry
        while last > 0 and lines[last].strip().startswith(ours):
            last -= 1
        if lines[last].strip().startswith("File "):
            lines = lines[: last + 1]
    return f"{TRACE_HEAD}{stderr_log}):\n" + _cap(lines)


TRACE_HEAD = "faulthandler trace (from "  # crash_trace's first line, up to the log's path


def split_crash(error: str) -> tuple[str, str]:
    """An attempt's error text as (what ended it, faulthandler's trace or ""): a crashed
    worker's text is "worker killed by SIGSEGV ..." then crash_trace(), whose last line is
    a frame, not the reason."""
    head, sep, trace = error.partition("\n" + TRACE_HEAD)
    return (head, TRACE_HEAD + trace) if sep else (error, "")


def error_line(error: str) -> str:
    """The one line that says how an attempt failed: an exception's "Type: message" (the
    traceback's last line), or why a worker crashed (not its trace's outermost frame)."""
    lines = split_crash(error.strip())[0].strip().splitlines()
    return lines[-1].strip() if lines else ""


_INIT_HEAD = re.compile(r"^init\(\) failed in process (\d+):$", re.MULTILINE)


def init_traceback(error_log: Path, process: int) -> str:
    """init()'s traceback as the worker wrote it to its error log (runtime/worker.py
    init_failed), for that process; "" when none is there."""
    text = _tail(error_log)
    found = [m for m in _INIT_HEAD.finditer(text) if int(m.group(1)) == process]
    if not found:
        return ""
    body = text[found[-1].end() :].lstrip("\n")
    following = _INIT_HEAD.search(body)
    if following is not None:
        body = body[: following.start()]
    return _cap(body.splitlines())


def resume_command(run_dir: Path, computes: Mapping[str, str] | None = None) -> str:
    """The exact command that finishes (or retries the failed part of) a run. ``computes``:
    the --compute mappings the run was given; a resume without them would run the cluster
    steps on this machine (the computes file is read again, so its names are not given)."""
    flags = "".join(
        f" --compute {shlex.quote(f'{name}={address}')}"
        for name, address in (computes or {}).items()
    )
    return f"parajob run --resume {shlex.quote(str(run_dir))}{flags}"


def terminal_block(
    step: str,
    status: str,
    reason: str,
    first_failure: str | None,
    run_dir: Path | None,
    computes: Mapping[str, str] | None = None,
) -> str:
    """What stderr shows after a step that did not succeed: its status and reason, the
    first failure (traceback included) and the command that resumes the run."""
    lines = [f"parajob: step {step} {status}: {reason}"]
    if first_failure:
        lines += [
            "first failure (also in job_result.txt and job_error.txt):",
            first_failure.rstrip(),
        ]
    if run_dir is not None and "resume with:" not in reason:
        lines.append(
            f"resume with: {resume_command(run_dir, computes)}  (runs again only "
            "what did not succeed)"
        )
    return "\n".join(lines)


# Where the frames that call the user's init() and run() live: parajob's package, the
# profiler's runcall under --profiling_module, importlib's (<frozen ...>) for the import.
_PACKAGE = str(Path(__file__).resolve().parents[1])
_CALLERS = ("cProfile.py", "profile.py")


def user_traceback(exc: BaseException) -> str:
    """format_exc() for an exception of the user's init() or run(), without the outer
    frames that are parajob's (the worker's loop, the profiler that wraps run()): the
    traceback starts at the entry script. One raised in parajob's own code (no frame
    below ours) keeps every frame. Called only on a failure, never on the hot path."""
    info = traceback.TracebackException.from_exception(exc)
    frames = list(info.stack)
    outer = 0
    while outer < len(frames) and (
        frames[outer].filename.startswith((_PACKAGE, "<frozen"))
        or frames[outer].filename.endswith(_CALLERS)
    ):
        outer += 1
    if 0 < outer < len(frames):
        info.stack = traceback.StackSummary.from_list(frames[outer:])
    return "".join(info.format())
