"""Per-process result spools: their format, reading records back, atomic output files.

Each worker process appends framed records to its own spool file, one record per ended
attempt: the formatted output rows of a successful attempt, or the traceback of a failed
one. The writer is C++ (``_core.ResultWriter``, cpp/include/parajob/result_writer.hpp): it
publishes the record's place (offset, length) in the batch slot with the same ``finish()``
call whose CAS decides whether the attempt counts. The merge (``_core.merge_records``)
reads only the records that the shared region points at, so an orphan record (an attempt
the watchdog took back, a retry's loser) is never copied to the output.

Record layout, little-endian (cpp/include/parajob/spool_format.hpp): magic b"PJR2",
kind u32 (0 rows, 1 error), batch u32, attempt u32, payload length u64, crc32 u32 (zlib's,
over the first 24 header bytes and then the payload), reserved u32, then the payload. The
checksum guards against user code that writes through, or dup2s over, descriptors it
inherited (runtime/fd_guard.py): the driver checks every accepted record
(``_core.SpoolChecker``) and runs the mini-batch again when it does not validate; resume
re-checks journalled records; the merge checks them once more and names what is wrong.
"""

from __future__ import annotations

import mmap
import os
import struct
import zlib
from collections.abc import Callable
from pathlib import Path

MAGIC = b"PJR2"
HEADER = struct.Struct("<4sIIIQII")
CHECKED_HEADER_BYTES = 24  # the crc covers these header bytes, then the payload
KIND_ROWS = 0
KIND_ERROR = 1


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

    def payload(self, process: int, offset: int, length: int, batch: int) -> bytes | None:
        """The payload of the record at (offset, length), or None when that record does not
        validate (header, batch, length, crc32)."""
        data = self._data(process, offset + length)
        if length < HEADER.size or offset + length > len(data):
            return None
        magic, _kind, rec_batch, _attempt, size, crc, _ = HEADER.unpack_from(data, offset)
        start = offset + HEADER.size
        if magic != MAGIC or rec_batch != batch or HEADER.size + size != length:
            return None
        body = data[start : start + size]
        if zlib.crc32(body, zlib.crc32(data[offset : offset + CHECKED_HEADER_BYTES])) != crc:
            return None
        return body

    def close(self) -> None:
        for data in self._maps.values():
            if isinstance(data, mmap.mmap):
                data.close()
        self._maps.clear()


def spool_path(spool_dir: Path, process: int) -> Path:
    return spool_dir / f"process{process:06d}.spool"


def write_atomically(target: Path, write: Callable[[Path], object]) -> None:
    """Have ``write`` fill a temporary file beside target, fsync it, rename it into place.

    Atomic so that a failure or a kill never leaves a half-written output file. The
    temporary name is this run's alone (pid and a random token, created with O_EXCL): two
    runs writing one output each fill their own file, and the later rename wins, whole;
    a fixed name let them write into one file and mix their rows (issue 8). On any error
    the temporary file is removed and the error raised; target is then untouched.
    """
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.{os.urandom(6).hex()}.partial")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)
    try:
        write(tmp)  # by name (the C++ merge opens it); the same inode as fd
        os.fsync(fd)
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    finally:
        os.close(fd)
    _fsync_folder(target.parent)  # the rename itself survives a crash


def _fsync_folder(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:  # some file systems refuse fsync on folders; the rename is done
        pass
    finally:
        os.close(fd)
