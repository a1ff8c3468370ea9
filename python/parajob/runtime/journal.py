"""The step's durable journal: which mini-batches were accepted, so a killed run resumes.

Append-only file of fixed-size records, written by the driver only. A checkpoint first
fsyncs the spools that hold the newly accepted records, then appends their journal records
and fsyncs the journal: a journalled batch's rows are on disk whatever happens next.
Resume rebuilds the plan (deterministic from the inputs), marks journalled batches DONE
with their spool places and runs the rest. A torn tail (the driver died mid-append) is
ignored: those batches simply run again, and the merge reads only journalled records.

File: a header record, the run's fingerprint block (runtime/fingerprint.py: the plan's
per-mini-batch digests and the code folder's), zero-padded to a whole number of records,
then one record per accepted batch. The header and the block are written together, by one
atomic rename (a fresh run; --resume --rerun-changed rewrites the file with the records it
keeps), so they are never torn; only the appended tail can be.

Record, little-endian (56 bytes): magic b"PJJ3", kind u32, batch u32, attempt u32,
process u32, reserved u32, spool offset u64, spool length u64, items in u64, items out u64.
The header (kind 0) holds the plan's batch count in batch, its item count in items in and
the fingerprint block's length in spool length. With --isolate_failures (runtime/isolation.py)
an accepted sub-batch's record (kind 1, its id >= the batch count) follows a piece record
(kind 2: batch = the sub-batch, attempt = its mini-batch, spool offset / length = its item
range [start, stop)), in the same write, so a record never lands without its piece; a
mini-batch whose bisection was abandoned gets kind 3 (batch = the mini-batch): its pieces
journalled before it do not count (resume runs it again from the start). Journals of an
older format are read as "fingerprint unknown": resume refuses them unless told to rerun
(b"PJJ1": no fingerprint, before issue 8; b"PJJ2": a fingerprint without the step settings).
"""

from __future__ import annotations

import os
import struct
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from parajob.runtime.shm_view import distinct_processes
from parajob.runtime.spool import spool_path, write_atomically

RECORD = struct.Struct("<4sIIIIIQQQQ")
MAGIC = b"PJJ3"
KIND_HEADER = 0
KIND_ACCEPTED = 1
KIND_PIECE = 2
KIND_ABANDONED = 3


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
    # Sub-batches (runtime/isolation.py): their mini-batch and item range [start, stop);
    # a mini-batch's own record has root = batch and stop = 0. None: no sub-batch.
    root: np.ndarray | None = None
    start: np.ndarray | None = None
    stop: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.batch)

    @classmethod
    def none(cls) -> Accepted:
        """No batch accepted yet (a fresh run)."""
        return cls(*(np.zeros(0, dtype=np.uint64) for _ in range(7)))

    def select(self, keep: np.ndarray) -> Accepted:
        """The records where ``keep`` (a boolean mask) holds."""
        pick = {f: getattr(self, f) for f in _FIELDS + _PIECE_FIELDS}
        chosen: dict[str, Any] = {f: None if v is None else v[keep] for f, v in pick.items()}
        return Accepted(**chosen)

    def roots(self) -> np.ndarray:
        """Each record's mini-batch (a sub-batch's root, else the batch itself)."""
        return (self.batch if self.root is None else self.root).astype(np.int64)

    def pieces(self) -> np.ndarray:
        """(k, 4) int64 rows of sub-batch id, mini-batch, start, stop: the records that
        are sub-batches."""
        if self.root is None or self.stop is None or self.start is None:
            return np.zeros((0, 4), dtype=np.int64)
        sub = self.stop > 0
        cols = (self.batch[sub], self.root[sub], self.start[sub], self.stop[sub])
        return np.stack([c.astype(np.int64) for c in cols], axis=1)


_FIELDS = ("batch", "attempt", "process", "offset", "length", "items_in", "items_out")
_PIECE_FIELDS = ("root", "start", "stop")


def journal_path(step_root: Path) -> Path:
    return step_root / "sys" / "journal.bin"


@dataclass(frozen=True)
class Journal:
    """What a journal holds: the fingerprint block it was started with (None: a journal
    of an older parajob, without one) and the batches accepted since."""

    fingerprint: bytes | None
    accepted: Accepted


def read_journal(path: Path) -> Journal | None:
    """The journal at path; None if there is none (the run died before its first batch)."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return None
    if len(data) < RECORD.size:
        return None
    head = RECORD.unpack_from(data, 0)
    if head[0] != MAGIC or head[1] != KIND_HEADER:
        return Journal(None, Accepted.none())
    block = head[7]
    first = RECORD.size + _padded(block)
    fingerprint = data[RECORD.size : RECORD.size + block]
    usable = len(data) - (len(data) - first) % RECORD.size  # a torn tail is ignored
    rows = [RECORD.unpack_from(data, o) for o in range(first, usable, RECORD.size)]
    # A batch journalled twice (it cannot be, but a later record wins) keeps one entry.
    latest: dict[int, tuple[Any, ...]] = {}
    pieces: dict[int, tuple[int, int, int]] = {}  # sub-batch -> (root, start, stop)
    for r in rows:
        if r[0] != MAGIC:
            continue
        if r[1] == KIND_ACCEPTED and (r[2] < head[2] or r[2] in pieces):
            latest[r[2]] = r
        elif r[1] == KIND_PIECE:
            pieces[r[2]] = (r[3], r[6], r[7])
        elif r[1] == KIND_ABANDONED:
            for sub in [b for b, p in pieces.items() if p[0] == r[2]]:
                latest.pop(sub, None)
                del pieces[sub]
    # A mini-batch accepted whole (a resume without isolation ran it again) has no pieces.
    for sub in [b for b, p in pieces.items() if p[0] in latest]:
        latest.pop(sub, None)
        del pieces[sub]
    cols = list(zip(*latest.values(), strict=True)) if latest else [()] * 10
    fields = [np.array(cols[i], dtype=np.uint64) for i in (2, 3, 4, 6, 7, 8, 9)]
    if not pieces:
        return Journal(fingerprint, Accepted(*fields))
    place = [pieces.get(int(b), (int(b), 0, 0)) for b in fields[0].tolist()]
    root, start, stop = (np.array(c, dtype=np.uint64) for c in zip(*place, strict=True))
    batch, attempt, process, offset, length, items_in, items_out = fields
    return Journal(
        fingerprint,
        Accepted(batch, attempt, process, offset, length, items_in, items_out, root, start, stop),
    )


def journal_start(
    fingerprint: bytes, n_batches: int, n_items: int, kept: Accepted | None = None
) -> bytes:
    """The bytes a journal starts with: header, fingerprint block, the kept records."""
    head = RECORD.pack(MAGIC, KIND_HEADER, n_batches, 0, 0, 0, 0, len(fingerprint), n_items, 0)
    block = fingerprint + bytes(_padded(len(fingerprint)) - len(fingerprint))
    return head + block + (_records(kept) if kept is not None else b"")


def _padded(n: int) -> int:
    return -(-n // RECORD.size) * RECORD.size


# RECORD as a numpy dtype: a checkpoint packs all its records at once (a struct.pack per
# record cost the driver ~2 us a mini-batch, 0.2 s per 100,000).
_RECORD_DTYPE = np.dtype(
    [
        ("magic", "S4"),
        ("kind", "<u4"),
        ("batch", "<u4"),
        ("attempt", "<u4"),
        ("process", "<u4"),
        ("reserved", "<u4"),
        ("offset", "<u8"),
        ("length", "<u8"),
        ("items_in", "<u8"),
        ("items_out", "<u8"),
    ]
)
assert _RECORD_DTYPE.itemsize == RECORD.size


def _records(a: Accepted) -> bytes:
    """The accepted records, the piece records of sub-batches first (see the docstring)."""
    rows = np.zeros(len(a), dtype=_RECORD_DTYPE)
    rows["magic"], rows["kind"] = MAGIC, KIND_ACCEPTED
    for name in _FIELDS:
        rows[name] = getattr(a, name)
    pieces = a.pieces()
    if not len(pieces):
        return rows.tobytes()
    heads = np.zeros(len(pieces), dtype=_RECORD_DTYPE)
    heads["magic"], heads["kind"] = MAGIC, KIND_PIECE
    heads["batch"], heads["attempt"] = pieces[:, 0], pieces[:, 1]
    heads["offset"], heads["length"] = pieces[:, 2], pieces[:, 3]
    return heads.tobytes() + rows.tobytes()


class JournalWriter:
    """Appends checkpoints to the journal. Driver-only; not thread-safe."""

    def __init__(
        self,
        path: Path,
        spool_dir: Path,
        start: bytes | None = None,
        on_checkpoint: Callable[[Accepted], None] | None = None,
    ) -> None:
        """Append to the journal at path; with start (journal_start()), first replace the
        file by start atomically: a fresh run, or a resume that dropped changed batches.
        on_checkpoint: told each checkpoint's batches once they are durable (in the
        driver's thread; it must not block)."""
        if start is not None:
            write_atomically(path, lambda tmp: tmp.write_bytes(start))
        self._fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CLOEXEC)
        self._spool_dir = spool_dir
        self._spool_fds: dict[int, int] = {}
        self._on_checkpoint = on_checkpoint

    def checkpoint(
        self,
        batch: np.ndarray,
        attempt: np.ndarray,
        process: np.ndarray,
        offset: np.ndarray,
        length: np.ndarray,
        items_in: np.ndarray,
        items_out: np.ndarray,
        pieces: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None,
    ) -> None:
        """Make these accepted batches durable: spools first, then the journal. pieces:
        each batch's (root, start, stop) when some are sub-batches (Accepted.root)."""
        if not len(batch):
            return
        for p in distinct_processes(process):
            fd = self._spool_fds.get(p)
            if fd is None:
                fd = self._spool_fds[p] = os.open(spool_path(self._spool_dir, p), os.O_RDONLY)
            os.fsync(fd)
        accepted = Accepted(
            batch, attempt, process, offset, length, items_in, items_out, *(pieces or ())
        )
        os.write(self._fd, _records(accepted))
        os.fsync(self._fd)
        if self._on_checkpoint is not None:
            self._on_checkpoint(accepted)

    def abandoned(self, root: int) -> None:
        """Mini-batch ``root``'s bisection was abandoned: its journalled pieces no longer
        count (it fails as a whole; a resume runs it again). Durable at once."""
        os.write(self._fd, RECORD.pack(MAGIC, KIND_ABANDONED, root, 0, 0, 0, 0, 0, 0, 0))
        os.fsync(self._fd)

    def close(self) -> None:
        for fd in self._spool_fds.values():
            os.close(fd)
        self._spool_fds.clear()
        os.close(self._fd)
