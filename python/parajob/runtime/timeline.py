"""The step's attempt timeline: when each attempt ran, where, and how it ended.

What ``parajob show`` (and its HTML report) reads to draw a timeline and a throughput
curve; the per-attempt CSV has no times. Written by the driver only, from what it already
holds when it decides an attempt (no new work in the workers' hot path, no C++ change):

    batch slot (start_ns, end_ns: CLOCK_MONOTONIC, written by the worker)
      |  Engine._accept (vectorised, DONE)  /  Engine._end_attempt (a failed attempt)
      v
    TimelineWriter.accepted() / .failed()   -- numpy rows kept in memory
      |  Engine._checkpoint (every CHECKPOINT_S, and at the end)
      v
    logs/sys/job_report/attempts_timeline.bin   appended, whole records per os.write
    logs/sys/job_report/workers.csv             one row per worker process started (flushed
                                                with the records)
    logs/sys/job_report/settings.json           the step's resolved settings, at start

Invariants:
- a record is appended once, after its attempt was decided; the file only grows (a
  resumed step appends to it), so a reader of a run still going sees whole records plus
  at most a torn tail, which read_timeline() drops;
- times are wall-clock nanoseconds since the epoch, as the executor gives them
  (Executor.attempt_times, the same times processed_mini-batches.csv shows).

Record, little-endian (48 bytes): batch u32, attempt u32 (1-based), process u32, status
u32 (index in STATUSES), items in u64, items out u64, start ns i64, end ns i64.
"""

from __future__ import annotations

import csv
import json
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from parajob.runtime.accounting import Limits
from parajob.runtime.layout import StepLayout
from parajob.runtime.spool import write_atomically

# How an attempt ended. The first two are accepted attempts (the done ring); the rest are
# the statuses Engine._end_attempt writes to processed_mini-batches.csv.
STATUSES = (
    "succeeded",
    "short_return",
    "raised",
    "wrong_return_type",
    "timed_out",
    "crashed",
    "corrupt_record",
    "other",
)
ACCEPTED_STATUSES = STATUSES[:2]

RECORD = np.dtype(
    [
        ("batch", "<u4"),
        ("attempt", "<u4"),
        ("process", "<u4"),
        ("status", "<u4"),
        ("items_in", "<u8"),
        ("items_out", "<u8"),
        ("start_ns", "<i8"),
        ("end_ns", "<i8"),
    ]
)
assert RECORD.itemsize == 48

TIMELINE_NAME = "attempts_timeline.bin"
WORKERS_NAME = "workers.csv"
SETTINGS_NAME = "settings.json"
WORKER_COLUMNS = ["process", "node", "name", "slot", "started"]


def timeline_path(layout: StepLayout) -> Path:
    return layout.processed_csv.parent / TIMELINE_NAME


def workers_path(layout: StepLayout) -> Path:
    return layout.processed_csv.parent / WORKERS_NAME


def settings_path(layout: StepLayout) -> Path:
    return layout.processed_csv.parent / SETTINGS_NAME


@dataclass(frozen=True)
class StepSettings:
    """What the step runs with once resolved (limits from fields and program arguments,
    the worker counts the engine actually starts)."""

    step: str
    total_batches: int
    total_items: int
    instance_count: int
    workers_per_node: int
    limits: Limits
    started: float  # epoch seconds
    driver_pid: int


class TimelineWriter:
    """Collects decided attempts in the driver and appends them at checkpoints."""

    def __init__(self, layout: StepLayout) -> None:
        self._layout = layout
        self._pending: list[np.ndarray] = []
        self._new_workers: list[list[object]] = []
        self._fd: int | None = None

    def start(self, settings: StepSettings) -> None:
        """Write settings.json (atomically: a reader never sees half of it)."""
        data = asdict(settings)
        text = json.dumps(data, indent=2).encode()
        write_atomically(settings_path(self._layout), lambda tmp: tmp.write_bytes(text))

    def worker(self, process: int, node: str, name: str, slot: int) -> None:
        """A worker process was started; written at the next flush (no file I/O between a
        fork and the driver's next look at the region)."""
        self._new_workers.append([process, node, name, slot, f"{time.time():.3f}"])

    def accepted(
        self,
        batches: np.ndarray,
        attempt: np.ndarray,
        process: np.ndarray,
        rows: np.ndarray,
        start_ns: np.ndarray,
        end_ns: np.ndarray,
    ) -> None:
        """DONE attempts (vectorised, as the engine's checkpoint sees them); rows: their
        batch slots; start_ns/end_ns: wall-clock times (Executor.attempt_times: on a Dask
        node, the node's own, not the driver's claim and arrival)."""
        out = np.zeros(len(batches), dtype=RECORD)
        out["batch"], out["attempt"], out["process"] = batches, attempt + 1, process
        out["items_in"], out["items_out"] = rows["items_in"], rows["items_out"]
        out["status"] = np.where(rows["items_out"] < rows["items_in"], 1, 0)
        out["start_ns"], out["end_ns"] = start_ns, end_ns
        self._pending.append(out)

    def failed(
        self,
        batch: int,
        attempt: int,
        process: int,
        status: str,
        items_in: int,
        start_ns: int,
        end_ns: int,
    ) -> None:
        """An attempt that ended without being accepted (Engine._end_attempt), with its
        wall-clock times from Executor.attempt_times."""
        row = np.zeros(1, dtype=RECORD)
        code = STATUSES.index(status) if status in STATUSES else STATUSES.index("other")
        row[0] = (batch, attempt + 1, process, code, items_in, 0, start_ns, max(end_ns, start_ns))
        self._pending.append(row)

    def flush(self) -> None:
        """Append what was collected since the last flush. Never raises OSError: the
        timeline is a report; the job does not depend on it."""
        if self._new_workers:
            rows, self._new_workers = self._new_workers, []
            try:
                self._write_workers(rows)
            except OSError:
                pass  # a report only
        if not self._pending:
            return
        data = np.concatenate(self._pending).tobytes()
        self._pending = []
        try:
            if self._fd is None:
                self._fd = os.open(
                    timeline_path(self._layout),
                    os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC,
                    0o644,
                )
            os.write(self._fd, data)
        except OSError:
            pass  # a full disk: the journal's checkpoint says so, and stops the job

    def _write_workers(self, rows: list[list[object]]) -> None:
        path = workers_path(self._layout)
        new = not path.exists()
        with open(path, "a", newline="", encoding="utf-8") as f:
            out = csv.writer(f)
            if new:
                out.writerow(WORKER_COLUMNS)
            out.writerows(rows)

    def close(self) -> None:
        self.flush()
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


def read_timeline(path: Path) -> np.ndarray:
    """Every whole record in a timeline file (none if it is missing); a torn tail (the
    driver is appending right now, or died mid-write) is dropped."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return np.zeros(0, dtype=RECORD)
    usable = len(data) - len(data) % RECORD.itemsize
    return np.frombuffer(data[:usable], dtype=RECORD)


def read_workers(path: Path) -> dict[int, dict[str, str]]:
    """process id -> its row of workers.csv."""
    try:
        with open(path, newline="", encoding="utf-8") as f:
            return {
                int(r["process"]): r for r in csv.DictReader(f) if r.get("process", "").isdigit()
            }
    except FileNotFoundError:
        return {}


def read_settings(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (FileNotFoundError, ValueError):
        return None
    return data if isinstance(data, dict) else None
