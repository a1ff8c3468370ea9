"""The step's durable journal: which mini-batches were accepted, so a killed run resumes.

Append-only file of fixed-size records, written by the driver only. A checkpoint first
fsyncs the spools that hold the newly accepted records, then appends their journal records
and fsyncs the journal: a journalled batch's rows are on disk whatever happens next.
Resume rebuilds the plan (deterministic from the inputs), marks journalled batches DONE
with their spool places and runs the rest. A torn tail (the driver died mid-append) is
ignored: those batches simply run again, and the merge reads only journalled records.

Record, little-endian (56 bytes): magic b"PJJ1", kind u32, batch u32, attempt u32,
process u32, reserved u32, spool offset u64, spool length u64, items in u64, items out u64.
The first record is a header (kind 0) whose batch field holds the plan's batch count and
whose items-in field holds its item count, so a changed input is refused on resume.
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np

RECORD = struct.Struct("<4sIIIIIQQQQ")
MAGIC = b"PJJ1"
KIND_HEADER = 0
KIND_ACCEPTED = 1


class JournalMismatch(Exception):
    """The journal belongs to another plan (the input changed since the run started)."""


@dataclass(frozen=True)
class Accepted:
    """Journalled accepted batches, as parallel numpy arrays."""

    batch: np.ndarray
    attempt: np.ndarray
    process: np.ndarray
    offset: np.ndarray
    length: np.ndarray
    items_in: np.ndarray
    items_out: np.ndarray

    def __len__(self) -> int:
        return len(self.batch)

    @classmethod
    def none(cls) -> Accepted:
        """No batch accepted yet (a fresh run)."""
        return cls(*(np.zeros(0, dtype=np.uint64) for _ in range(7)))


def journal_path(step_root: Path) -> Path:
    return step_root / "sys" / "journal.bin"


def read_journal(path: Path, n_batches: int, n_items: int) -> Accepted:
    """The accepted batches recorded in path (empty if it does not exist)."""
    data = path.read_bytes() if path.exists() else b""
    usable = len(data) - len(data) % RECORD.size  # a torn tail is ignored
    rows = [RECORD.unpack_from(data, o) for o in range(0, usable, RECORD.size)]
    rows = [r for r in rows if r[0] == MAGIC]
    if rows and rows[0][1] == KIND_HEADER and (rows[0][2], rows[0][8]) != (n_batches, n_items):
        raise JournalMismatch(
            f"{path}: the run was planned as {rows[0][2]} mini-batches of {rows[0][8]} items, "
            f"the input now gives {n_batches} mini-batches of {n_items} items; "
            "the input changed since the run started, so it cannot be resumed: start a new run")
    accepted = [r for r in rows if r[1] == KIND_ACCEPTED]
    # A batch journalled twice (it cannot be, but a later record wins) keeps one entry.
    latest = {r[2]: r for r in accepted}
    cols = list(zip(*latest.values(), strict=True)) if latest else [()] * 10
    return Accepted(*(np.array(cols[i], dtype=np.uint64) for i in (2, 3, 4, 6, 7, 8, 9)))


class JournalWriter:
    """Appends checkpoints to the journal. Driver-only; not thread-safe."""

    def __init__(self, path: Path, spool_dir: Path, n_batches: int, n_items: int) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        new = not path.exists() or path.stat().st_size < RECORD.size
        self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        self._spool_dir = spool_dir
        self._spool_fds: dict[int, int] = {}
        if new:
            os.write(self._fd,
                     RECORD.pack(MAGIC, KIND_HEADER, n_batches, 0, 0, 0, 0, 0, n_items, 0))
            os.fsync(self._fd)

    def checkpoint(self, batch: np.ndarray, attempt: np.ndarray, process: np.ndarray,
                   offset: np.ndarray, length: np.ndarray, items_in: np.ndarray,
                   items_out: np.ndarray) -> None:
        """Make these accepted batches durable: spools first, then the journal."""
        if not len(batch):
            return
        from parajob.runtime.spool import spool_path

        for p in np.unique(process).tolist():
            fd = self._spool_fds.get(p)
            if fd is None:
                fd = self._spool_fds[p] = os.open(spool_path(self._spool_dir, p), os.O_RDONLY)
            os.fsync(fd)
        records = b"".join(
            RECORD.pack(MAGIC, KIND_ACCEPTED, b, a, p, 0, o, n, i, j)
            for b, a, p, o, n, i, j in zip(batch.tolist(), attempt.tolist(), process.tolist(),
                                           offset.tolist(), length.tolist(), items_in.tolist(),
                                           items_out.tolist(), strict=True)
        )
        os.write(self._fd, records)
        os.fsync(self._fd)

    def close(self) -> None:
        for fd in self._spool_fds.values():
            os.close(fd)
        self._spool_fds.clear()
        os.close(self._fd)
