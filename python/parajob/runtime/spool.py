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
from collections.abc import Iterable
from pathlib import Path

MAGIC = b"PJR1"
HEADER = struct.Struct("<4sIIIQ")
KIND_ROWS = 0
KIND_ERROR = 1


class SpoolWriter:
    """Appends records to one process's spool. Owned by a single worker process."""

    def __init__(self, path: Path) -> None:
        self.path = path
        # O_APPEND + one os.write per record: a record is never interleaved, and a worker
        # killed mid-write leaves at most a torn tail that nothing points at.
        self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        self._offset = os.lseek(self._fd, 0, os.SEEK_END)

    def append(self, kind: int, batch: int, attempt: int, payload: bytes) -> tuple[int, int]:
        """Write one record; returns (offset, length) of the whole record."""
        record = HEADER.pack(MAGIC, kind, batch, attempt, len(payload)) + payload
        offset = self._offset
        view = memoryview(record)
        while view:  # a regular file takes it in one write; loop for the pathological case
            written = os.write(self._fd, view)
            view = view[written:]
        self._offset += len(record)
        return offset, len(record)

    def close(self) -> None:
        os.close(self._fd)


class SpoolReader:
    """Random access to the records of every spool of a step (driver side)."""

    def __init__(self, spool_dir: Path) -> None:
        self._dir = spool_dir
        self._maps: dict[int, mmap.mmap | bytes] = {}

    def _data(self, process: int) -> mmap.mmap | bytes:
        data = self._maps.get(process)
        if data is None:
            path = spool_path(self._dir, process)
            with open(path, "rb") as f:
                size = os.fstat(f.fileno()).st_size
                data = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) if size else b""
            self._maps[process] = data
        return data

    def payload(self, process: int, offset: int, length: int, batch: int) -> bytes:
        """The payload of the record at (offset, length), checked against its header."""
        data = self._data(process)
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


def write_merged(target: Path, chunks: Iterable[bytes]) -> int:
    """Write chunks to target atomically (temp file + rename); returns bytes written.

    Atomic so that a failure or a kill never leaves a half-written output file.
    """
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.partial")
    total = 0
    with open(tmp, "wb", buffering=1 << 20) as out:
        for chunk in chunks:
            out.write(chunk)
            total += len(chunk)
        out.flush()
        os.fsync(out.fileno())
    os.replace(tmp, target)
    return total
