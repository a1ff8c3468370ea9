"""The step's reports: the per-attempt CSV, job_error.txt, job_result.txt and job_result.json
(the live progress and its overview file: runtime/progress.py)."""

from __future__ import annotations

import contextlib
import csv
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import numpy as np

from parajob import _core, terminal
from parajob.executors.base import NodeHost
from parajob.runtime.accounting import Tally
from parajob.runtime.failures import error_line, split_crash
from parajob.runtime.layout import QUARANTINE_CSV, StepLayout
from parajob.runtime.progress import Progress as Progress  # re-exported: its old home
from parajob.runtime.spool import write_atomically

# The first nine are the first cut's, unchanged (readers by position keep working); the
# rest say when and where each attempt ran: UTC ISO-8601 with milliseconds, the worker's
# OS pid on its host, the node's index and the host's name (README, "Logs").
CSV_COLUMNS = [
    "index",
    "attempt",
    "node",
    "process",
    "items_in",
    "items_out",
    "seconds",
    "status",
    "error",
    "start_time",
    "end_time",
    "pid",
    "node_index",
    "host",
]


def iso_times(ns: np.ndarray) -> list[str]:
    """Wall-clock ns since the epoch as UTC ISO-8601 with milliseconds ("...T14:07:08.123Z")."""
    return [t.decode() for t in _iso_bytes(ns).tolist()]


def _iso_bytes(ns: np.ndarray) -> np.ndarray:
    """iso_times, vectorised, as a numpy bytes array (S24). Digits are written into a byte
    matrix; numpy formats only the distinct days (its datetime_as_string took ~0.5 us a
    stamp: a second per 100,000 attempts' start and end on a loaded machine)."""
    ms = np.asarray(ns, dtype=np.int64) // 1_000_000
    day, ms_of_day = np.divmod(ms, 86_400_000)
    days, which = np.unique(day, return_inverse=True)
    dates = np.datetime_as_string(days.astype("datetime64[D]")).astype("S10")
    out = np.empty((len(ms), 24), dtype=np.uint8)
    out[:, :10] = dates.view(np.uint8).reshape(-1, 10)[which.reshape(-1)]
    second, milli = np.divmod(ms_of_day, 1000)
    hour, minute, sec = second // 3600, second // 60 % 60, second % 60
    digits = (
        (11, hour // 10),
        (12, hour % 10),
        (14, minute // 10),
        (15, minute % 10),
        (17, sec // 10),
        (18, sec % 10),
        (20, milli // 100),
        (21, milli // 10 % 10),
        (22, milli % 10),
    )
    for column, value in digits:
        out[:, column] = value + ord("0")
    for column, char in ((10, "T"), (13, ":"), (16, ":"), (19, "."), (23, "Z")):
        out[:, column] = ord(char)
    return out.reshape(-1).view("S24")


def _csv_field(text: str) -> str:
    """A host name as one CSV field (a Dask node names its own host: quote what needs it)."""
    if any(c in text for c in ',"\r\n'):
        return '"' + text.replace('"', '""') + '"'
    return text


def step_status(succeeded: bool, interrupted: bool, cancelled: bool) -> str:
    """How a step ended, for every kind of step: SUCCEEDED, CANCELLED (the caller's cancel),
    INTERRUPTED (a signal: resumable) or FAILED."""
    if succeeded:
        return "SUCCEEDED"
    return "CANCELLED" if cancelled else "INTERRUPTED" if interrupted else "FAILED"


@dataclass(frozen=True)
class Failure:
    """A mini-batch that failed for good, as structured data (RunResult, job_result.json)."""

    batch: int  # mini-batch index
    inputs: str  # what it read (BatchPlan.describe)
    attempts: int  # tries it spent
    status: str  # how its last attempt ended: raised, timed_out, crashed, ...
    error_type: str  # the exception's type name ("" when nothing was raised)
    message: str  # the exception's message, or what ended the attempt
    traceback: str  # the last attempt's traceback text ("" when none)

    @classmethod
    def of(cls, batch: int, inputs: str, attempts: int, status: str, error: str) -> Failure:
        """From the text the driver logs for an attempt: a worker's "mini-batch N attempt K
        (process P):" line, then a Python traceback whose last line is "Type: message", or
        one line saying why the attempt ended (a timeout, a signal)."""
        error, trace = split_crash(error.strip())  # a crash: its faulthandler trace
        lines = error.strip().splitlines()
        if lines and lines[0].startswith(("mini-batch ", "sub-batch ")) and lines[0].endswith(":"):
            lines = lines[1:]
        text = "\n".join(lines)
        error_type, message = "", lines[-1].strip() if lines else status
        if status == "raised" and lines:
            head, colon, rest = lines[-1].partition(": ")
            if head and " " not in head.strip():
                error_type, message = head.strip(), rest.strip() if colon else ""
        traceback = (
            text + "\n" if text.startswith("Traceback") else trace.rstrip() + "\n" if trace else ""
        )
        return cls(batch, inputs, attempts, status, error_type, message, traceback)


@dataclass
class Outcome:
    """How a step ended; what the CLI prints and turns into an exit code."""

    step: str
    succeeded: bool
    reason: str
    tally: Tally
    output: Path | None
    logs: Path
    first_failure: str | None = None  # inputs and traceback of the first failed mini-batch
    seconds: float = 0.0
    interrupted: bool = False  # stopped by Ctrl-C / SIGTERM / cancel: resumable
    cancelled: bool = False  # stopped by the caller's cancel (parajob.run)
    failures: list[Failure] = field(default_factory=list)  # mini-batches failed for good
    hosts: list[NodeHost] = field(default_factory=list)  # where each node ran
    settings: dict[str, Any] = field(default_factory=dict)  # what it ran with, resolved
    started_at: float = 0.0  # wall clock, s since the epoch (0: not known)
    # --isolate_failures: the items that failed alone (runtime/isolation.Quarantined)
    quarantined: list[Any] = field(default_factory=list)

    @property
    def status(self) -> str:
        return step_status(self.succeeded, self.interrupted, self.cancelled)

    def summary(self) -> str:
        t = self.tally
        lines = [
            f"step:                 {self.step}",
            f"status:               {self.status}",
            f"reason:               {self.reason}",
            f"mini-batches:         {t.total_batches} total, {t.done_batches} completed, "
            f"{t.failed_batches} failed",
            f"items:                {t.items_in} in, {t.items_out} returned, "
            f"{t.failed_items} failed",
            f"failed attempts:      {t.failed_attempts} (retried or failed for good)",
            f"elapsed:              {self.seconds:.2f} s",
            f"output:               {self.output if self.output else '(summary_only)'}",
            f"logs:                 {self.logs}",
            *(f"{'hosts:' if i == 0 else '':22}{h.describe()}" for i, h in enumerate(self.hosts)),
        ]
        if self.quarantined:
            shown = ", ".join(q.item for q in self.quarantined[:3])
            more = f" and {len(self.quarantined) - 3} more" if len(self.quarantined) > 3 else ""
            lines.append(
                f"quarantined:          {len(self.quarantined)} item(s): {shown}{more} "
                f"({self.logs / QUARANTINE_CSV})"
            )
        if self.first_failure:
            title = (
                "first failure:"
                if self.first_failure.startswith(("init() ", "process "))
                else "first failed mini-batch:"
            )
            lines += ["", title, self.first_failure.rstrip()]
        return "\n".join(lines) + "\n"


class AttemptLog:
    """processed_mini-batches.csv and job_error.txt.

    Workers write the rows of their accepted attempts to their own part files (a row costs
    a worker ~0.5 us, the single-threaded driver several); the driver writes the rows of
    failed attempts. close() joins the parts into processed_mini-batches.csv:

        parts/process<P>.csv (worker rows: index .. error)  --+
        accepted(): when each accepted attempt ran  ----------+--> close(): each worker
        worker(): pid, node, host of process P  --------------+    row + its 5 last columns
        parts/driver.csv (failed attempts: every column)  -------> copied as it is

    The engine hands over accepted() and worker() at its checkpoints, from the batch slots
    it reads there anyway: nothing is added per mini-batch in the workers or the accept
    path. They are kept in memory: a driver killed before close() leaves its workers'
    rows with those five columns empty after --resume.
    """

    def __init__(self, layout: StepLayout) -> None:
        self._layout = layout
        self._parts = layout.processed_csv.parent / "parts"
        if layout.processed_csv.exists() and not self._parts.exists():
            # A resumed run that had finished: its rows become a part, joined again at close.
            self._parts.mkdir(parents=True)
            text = layout.processed_csv.read_text(encoding="utf-8")
            (self._parts / "earlier.csv").write_text(
                text.split("\n", 1)[1] if "\n" in text else "", encoding="utf-8"
            )
        self._parts.mkdir(parents=True, exist_ok=True)
        self._csv_file = open(
            self._parts / "driver.csv", "a", newline="", encoding="utf-8", errors="backslashreplace"
        )
        self._csv = csv.writer(self._csv_file)
        self._errors_path = layout.job_error
        self._errors: TextIO | None = None
        self._accepted: list[np.ndarray] = []  # (batch, attempt, process, start, end)
        self._workers: dict[int, tuple[int, int, str]] = {}  # process -> pid, node, host

    def attempt(
        self,
        index: int,
        attempt: int,
        node: str,
        process: str,
        items_in: int,
        items_out: int,
        seconds: float,
        status: str,
        error: str = "",
        *,
        when: tuple[int, int] | None = None,
        pid: int = 0,
        node_index: int = -1,
        host: str = "",
        label: str | None = None,
    ) -> None:
        """A failed attempt's row (the driver's). ``when``: its wall-clock start and end,
        ns since the epoch. ``label``: how job_error.txt names the batch (a sub-batch's
        with its mini-batch); default "mini-batch <index>"."""
        first_line = error_line(error)
        start, end = iso_times(np.array(when)) if when is not None else ("", "")
        self._csv.writerow(
            [
                index,
                attempt + 1,
                node,
                process,
                items_in,
                items_out,
                f"{seconds:.4f}",
                status,
                first_line,
                start,
                end,
                pid or "",
                node_index if node_index >= 0 else "",
                host,
            ]
        )
        if error:
            if self._errors is None:
                self._errors = open(
                    self._errors_path, "a", encoding="utf-8", errors="backslashreplace"
                )
            self._errors.write(
                f"--- {label or f'mini-batch {index}'} attempt {attempt + 1} on {node}/{process}: "
                f"{status}\n{error.rstrip()}\n"
            )

    def worker_failed(self, head: str, text: str) -> None:
        """A failure that is no attempt's (init() raised, a worker died before init() was
        done): a block in job_error.txt, as an attempt's is."""
        if self._errors is None:
            self._errors = open(self._errors_path, "a", encoding="utf-8", errors="backslashreplace")
        self._errors.write(f"--- {head}\n{text.rstrip()}\n")
        self._errors.flush()

    def close(self) -> None:
        self._csv_file.close()
        if self._errors is not None:
            self._errors.close()
        accepted = (
            np.concatenate(self._accepted, axis=1)
            if self._accepted
            else np.zeros((5, 0), dtype=np.int64)
        )
        with open(self._layout.processed_csv, "wb") as out:
            out.write((",".join(CSV_COLUMNS) + "\n").encode())
            for part in sorted(self._parts.iterdir()):
                if part.name.startswith("process"):  # a worker's: user code could write there
                    process = _part_process(part.name)
                    mine = accepted[:, accepted[2] == process]
                    # One C++ call per part (attempt_rows.hpp): drops what is not a row as
                    # the workers write it, then adds the five columns of when and where.
                    out.write(
                        _core.join_attempt_rows(
                            part.read_bytes(),
                            mine[0],
                            mine[1],
                            mine[3],
                            mine[4],
                            self._place(process),
                        )
                    )
                else:  # the driver's own (driver.csv, earlier.csv): copied as they are
                    with open(part, "rb") as f:
                        while chunk := f.read(1 << 20):
                            out.write(chunk)
                part.unlink()
        self._parts.rmdir()

    def worker(self, process: int, pid: int, node: int, host: str) -> None:
        """Where worker process ``process`` ran (its pid may be learnt late: the last wins)."""
        self._workers[process] = (pid, node, host)

    def accepted(
        self,
        batches: np.ndarray,
        attempt: np.ndarray,
        process: np.ndarray,
        start_ns: np.ndarray,
        end_ns: np.ndarray,
    ) -> None:
        """When these accepted attempts ran (wall-clock ns since the epoch). Vectorised."""
        self._accepted.append(
            np.stack(
                [
                    batches.astype(np.int64),
                    attempt.astype(np.int64),
                    process.astype(np.int64),
                    start_ns.astype(np.int64),
                    end_ns.astype(np.int64),
                ]
            )
        )

    def _place(self, process: int) -> bytes:
        """pid,node_index,host of a worker process ("" for what is not known)."""
        pid, node, host = self._workers.get(process, (0, -1, ""))
        return f"{pid or ''},{node if node >= 0 else ''},{_csv_field(host)}".encode()


def _part_process(name: str) -> int:
    """The process id in a worker part's name (worker_attempts_part); -1 if none."""
    digits = name[len("process") :].partition(".")[0]
    return int(digits) if digits.isdigit() else -1


def worker_attempts_part(layout: StepLayout, process: int) -> Path:
    """Where a worker process writes the CSV rows of its accepted attempts."""
    return layout.processed_csv.parent / "parts" / f"process{process:06d}.csv"


def write_job_result(layout: StepLayout, outcome: Outcome) -> None:
    """job_result.txt and job_result.json of a parallel step (see write_step_result)."""
    write_step_result(layout.job_result, outcome)


def write_step_result(job_result: Path, outcome: Any) -> None:
    """Write ``job_result.json`` (``StepResult.to_dict()``: what a program reads) and then
    ``job_result.txt`` (``outcome.summary()``: what a person reads) beside it, each
    atomically; the json first, so that a txt that says SUCCEEDED (which --resume trusts
    for a command step) always has its json. ``outcome``: a runtime Outcome or
    CommandOutcome. A disk too full for them is said on the terminal, not raised: the
    outcome (and the exit code) stand, the terminal shows the same summary, and no
    half-written or earlier file is left to contradict it."""
    from parajob.results import StepResult  # results imports this module's Failure

    record = json.dumps(
        StepResult.from_outcome(outcome).to_dict(), indent=2, ensure_ascii=True
    )  # ascii: file names that are not UTF-8 survive
    # backslashreplace: the first failure may name a file whose name is not UTF-8
    summary = outcome.summary().encode("utf-8", "backslashreplace")
    _replace(job_result.with_suffix(".json"), record.encode("ascii"))
    _replace(job_result, summary)


def _replace(path: Path, data: bytes) -> None:
    try:
        write_atomically(path, lambda tmp: tmp.write_bytes(data))
    except OSError as exc:
        with contextlib.suppress(OSError):
            path.unlink(missing_ok=True)
        terminal.echo(f"parajob: could not write {path}: {exc.strerror or exc}", err=True)


def append_line(path: Path, text: str) -> None:
    """Append text (newline-terminated) to a log file, making its folder."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a", encoding="utf-8", errors="backslashreplace") as f:  # odd file names
        f.write(text if text.endswith("\n") else text + "\n")
