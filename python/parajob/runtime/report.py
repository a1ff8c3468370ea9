"""The step's reports: the per-attempt CSV, job_error.txt, job_result.txt and job_result.json
(the live progress and its overview file: runtime/progress.py)."""

from __future__ import annotations

import contextlib
import csv
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from parajob import terminal
from parajob.runtime.accounting import Tally
from parajob.runtime.layout import StepLayout
from parajob.runtime.progress import Progress as Progress  # re-exported: its old home
from parajob.runtime.spool import write_atomically

CSV_COLUMNS = ["index", "attempt", "node", "process", "items_in", "items_out", "seconds",
               "status", "error"]


def step_status(succeeded: bool, interrupted: bool, cancelled: bool) -> str:
    """How a step ended, for every kind of step: SUCCEEDED, CANCELLED (the caller's cancel),
    INTERRUPTED (a signal: resumable) or FAILED."""
    if succeeded:
        return "SUCCEEDED"
    return "CANCELLED" if cancelled else "INTERRUPTED" if interrupted else "FAILED"


@dataclass(frozen=True)
class Failure:
    """A mini-batch that failed for good, as structured data (RunResult, job_result.json)."""

    batch: int         # mini-batch index
    inputs: str        # what it read (BatchPlan.describe)
    attempts: int      # tries it spent
    status: str        # how its last attempt ended: raised, timed_out, crashed, ...
    error_type: str    # the exception's type name ("" when nothing was raised)
    message: str       # the exception's message, or what ended the attempt
    traceback: str     # the last attempt's traceback text ("" when none)

    @classmethod
    def of(cls, batch: int, inputs: str, attempts: int, status: str, error: str) -> Failure:
        """From the text the driver logs for an attempt: a worker's "mini-batch N attempt K
        (process P):" line, then a Python traceback whose last line is "Type: message", or
        one line saying why the attempt ended (a timeout, a signal)."""
        lines = error.strip().splitlines()
        if lines and lines[0].startswith("mini-batch ") and lines[0].endswith(":"):
            lines = lines[1:]
        text = "\n".join(lines)
        error_type, message = "", lines[-1].strip() if lines else status
        if status == "raised" and lines:
            head, colon, rest = lines[-1].partition(": ")
            if head and " " not in head.strip():
                error_type, message = head.strip(), rest.strip() if colon else ""
        traceback = text + "\n" if text.startswith("Traceback") else ""
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
    interrupted: bool = False         # stopped by Ctrl-C / SIGTERM / cancel: resumable
    cancelled: bool = False           # stopped by the caller's cancel (parajob.run)
    failures: list[Failure] = field(default_factory=list)  # mini-batches failed for good

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
        ]
        if self.first_failure:
            title = ("first failure:" if self.first_failure.startswith(("init() ", "process "))
                     else "first failed mini-batch:")
            lines += ["", title, self.first_failure.rstrip()]
        return "\n".join(lines) + "\n"


class AttemptLog:
    """processed_mini-batches.csv and job_error.txt.

    Workers write the rows of their accepted attempts to their own part files (a row costs
    a worker ~0.5 us, the single-threaded driver several); the driver writes the rows of
    failed attempts. close() joins the parts into processed_mini-batches.csv.
    """

    def __init__(self, layout: StepLayout) -> None:
        self._layout = layout
        self._parts = layout.processed_csv.parent / "parts"
        if layout.processed_csv.exists() and not self._parts.exists():
            # A resumed run that had finished: its rows become a part, joined again at close.
            self._parts.mkdir(parents=True)
            text = layout.processed_csv.read_text(encoding="utf-8")
            (self._parts / "earlier.csv").write_text(text.split("\n", 1)[1] if "\n" in text else "",
                                                    encoding="utf-8")
        self._parts.mkdir(parents=True, exist_ok=True)
        self._csv_file = open(self._parts / "driver.csv", "a", newline="", encoding="utf-8",
                              errors="backslashreplace")
        self._csv = csv.writer(self._csv_file)
        self._errors_path = layout.job_error
        self._errors: TextIO | None = None

    def attempt(self, index: int, attempt: int, node: str, process: str, items_in: int,
                items_out: int, seconds: float, status: str, error: str = "") -> None:
        first_line = error.strip().splitlines()[-1] if error.strip() else ""
        self._csv.writerow([index, attempt + 1, node, process, items_in, items_out,
                            f"{seconds:.4f}", status, first_line])
        if error:
            if self._errors is None:
                self._errors = open(self._errors_path, "a", encoding="utf-8",
                                    errors="backslashreplace")
            self._errors.write(f"--- mini-batch {index} attempt {attempt + 1} on {node}/{process}: "
                               f"{status}\n{error.rstrip()}\n")

    def worker_failed(self, head: str, text: str) -> None:
        """A failure that is no attempt's (init() raised, a worker died before init() was
        done): a block in job_error.txt, as an attempt's is."""
        if self._errors is None:
            self._errors = open(self._errors_path, "a", encoding="utf-8",
                                errors="backslashreplace")
        self._errors.write(f"--- {head}\n{text.rstrip()}\n")
        self._errors.flush()

    def close(self) -> None:
        self._csv_file.close()
        if self._errors is not None:
            self._errors.close()
        with open(self._layout.processed_csv, "wb") as out:
            out.write((",".join(CSV_COLUMNS) + "\n").encode())
            for part in sorted(self._parts.iterdir()):
                if part.name.startswith("process"):  # a worker's: user code could write there
                    out.writelines(_worker_rows(part.read_bytes()))
                else:  # the driver's own (driver.csv, earlier.csv): copied as they are
                    with open(part, "rb") as f:
                        while chunk := f.read(1 << 20):
                            out.write(chunk)
                part.unlink()
        self._parts.rmdir()


# A row as the workers' C++ ResultWriter writes it (index, attempt, node, process, items in,
# items out, seconds, status, empty error). A worker's part file is one of its open files,
# so user code that writes to inherited descriptors can reach it (issue 8): lines that are
# not such rows are dropped, never copied into the report or allowed to break it.
_WORKER_ROW = re.compile(
    rb"\d+,\d+,node\d+,process\d+,\d+,\d+,\d+\.\d+,(?:succeeded|short_return),\n")


def _worker_rows(data: bytes) -> list[bytes]:
    return [line for line in data.splitlines(keepends=True) if _WORKER_ROW.fullmatch(line)]


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

    record = json.dumps(StepResult.from_outcome(outcome).to_dict(), indent=2,
                        ensure_ascii=True)  # ascii: file names that are not UTF-8 survive
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
