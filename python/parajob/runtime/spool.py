"""Per-process result spools and the exactly-once merge.

Each worker process appends framed records to its own spool file, one record per ended
attempt: the formatted output rows of a successful attempt, or the traceback of a failed
one. The record's place (offset, length) is published in the batch slot by the same
``finish()`` call whose CAS decides whether the attempt counts. The merge reads only the
records that the shared region points at, so an orphan record (an attempt the watchdog
took back, a retry's loser) is never copied to the output.

Record layout, little-endian: magic b"PJR1", kind u32 (0 rows, 1 error), batch u32,
attempt u32, payload length u64, then the payload.
"""

from __future__ import annotations

import mmap
import os
import struct
import time
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

MAGIC = b"PJR1"
HEADER = struct.Struct("<4sIIIQ")
KIND_ROWS = 0
KIND_ERROR = 1


class Finish(NamedTuple):
    """What finish() publishes for one ended attempt, once its record is in the file."""

    batch: int
    attempt: int
    ok: bool
    items_in: int
    items_out: int
    offset: int
    length: int
    error_code: int
    seconds: float


class SpoolWriter:
    """Appends records to one process's spool. Owned by a single worker process.

    Records of quick run() calls are gathered and written with one write(); each attempt's
    finish() is called (through ``on_written``) only after the write, so a mini-batch is
    DONE only once its record is in the file. Gathering saves a system call per mini-batch
    (about a quarter of the per-mini-batch cost with one-file mini-batches). It is bounded
    so that a finished mini-batch waits at most GATHER_MAX_S before it is published: a
    worker that dies in that window costs those attempts a retry, never their rows twice.
    """

    GATHER_MAX_S = 0.005
    GATHER_MAX_RUN_S = 0.001   # only gather behind run() calls shorter than this
    GATHER_MAX_RECORDS = 256
    GATHER_MAX_BYTES = 1 << 18

    def __init__(self, path: Path, on_written: Callable[[list[Finish]], None]) -> None:
        self.path = path
        self._on_written = on_written
        # O_APPEND + one os.write per group: records are never interleaved, and a worker
        # killed mid-write leaves at most a torn tail that nothing points at.
        self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        self._offset = os.lseek(self._fd, 0, os.SEEK_END)
        self._buffer = bytearray()
        self._pending: list[Finish] = []
        self._first_pending_at = 0.0

    def add(self, kind: int, batch: int, attempt: int, payload: bytes, *, ok: bool,
            items_in: int, items_out: int, error_code: int, run_seconds: float) -> None:
        """Queue one record; writes (and publishes) at once unless gathering pays off."""
        offset = self._offset + len(self._buffer)
        self._buffer += HEADER.pack(MAGIC, kind, batch, attempt, len(payload))
        self._buffer += payload
        length = HEADER.size + len(payload)
        if not self._pending:
            self._first_pending_at = time.monotonic()
        self._pending.append(Finish(batch, attempt, ok, items_in, items_out, offset, length,
                                    error_code, run_seconds))
        if (not ok or run_seconds >= self.GATHER_MAX_RUN_S
                or len(self._pending) >= self.GATHER_MAX_RECORDS
                or len(self._buffer) >= self.GATHER_MAX_BYTES
                or time.monotonic() - self._first_pending_at >= self.GATHER_MAX_S):
            self.flush()

    def flush(self) -> None:
        """Write what is gathered, then publish each attempt's end. Never leaves a partial
        group published: finish() runs only after the whole write returned."""
        if not self._pending:
            return
        with memoryview(self._buffer) as whole:
            view = whole
            while view:  # a regular file takes it in one write; loop for the pathological case
                view = view[os.write(self._fd, view):]
            del view  # release the export, or the bytearray cannot be cleared
        self._offset += len(self._buffer)
        self._buffer.clear()
        pending, self._pending = self._pending, []
        self._on_written(pending)

    def close(self) -> None:
        self.flush()
        os.close(self._fd)


class SpoolReader:
    """Random access to the records of every spool of a step (driver side)."""

    def __init__(self, spool_dir: Path) -> None:
        self._dir = spool_dir
        self._maps: dict[int, mmap.mmap | bytes] = {}

    def _data(self, process: int, end: int) -> mmap.mmap | bytes:
        """The spool's bytes, mapped again when the record ends past the last mapping
        (workers keep appending while the driver reads)."""
        data = self._maps.get(process)
        if data is None or len(data) < end:
            if isinstance(data, mmap.mmap):
                data.close()
            with open(spool_path(self._dir, process), "rb") as f:
                size = os.fstat(f.fileno()).st_size
                data = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) if size else b""
            self._maps[process] = data
        return data

    def payload(self, process: int, offset: int, length: int, batch: int) -> bytes:
        """The payload of the record at (offset, length), checked against its header."""
        data = self._data(process, offset + length)
        magic, _kind, rec_batch, _attempt, size = HEADER.unpack_from(data, offset)
        if magic != MAGIC or rec_batch != batch or HEADER.size + size != length:
            raise RuntimeError(
                f"spool of process {process} is corrupt at offset {offset} "
                f"(expected mini-batch {batch}); the run folder was modified or the disk is failing"
            )
        start = offset + HEADER.size
        return data[start : start + size]

    def close(self) -> None:
        for data in self._maps.values():
            if isinstance(data, mmap.mmap):
                data.close()
        self._maps.clear()


def spool_path(spool_dir: Path, process: int) -> Path:
    return spool_dir / f"process{process:06d}.spool"


def write_atomically(target: Path, write: Callable[[Path], object]) -> None:
    """Have ``write`` fill a temporary file beside target, fsync it, rename it into place.

    Atomic so that a failure or a kill never leaves a half-written output file.
    """
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.partial")
    try:
        write(tmp)
        fd = os.open(tmp, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)
