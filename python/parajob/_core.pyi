"""Type stubs for parajob._core, the compiled core (one section per concept)."""

import os
from typing import Any

import numpy as np
import numpy.typing as npt

# Until every concept has its section here, names without one resolve to Any, so a
# partial stub cannot make mypy reject correct callers (PEP 484 partial stubs).
def __getattr__(name: str) -> Any: ...

# --- listing ---

class FileList:
    """The regular files under a folder, sorted by relative path (byte-wise), with sizes.

    Immutable, plain memory: safe to read from threads and from processes forked after it
    was built. Names that are not valid UTF-8 decode as os.fsdecode does (surrogateescape).
    """

    @property
    def root(self) -> str:
        """Absolute, lexically normalised root folder that was listed."""
    @property
    def total_bytes(self) -> int: ...
    def __len__(self) -> int: ...
    def path(self, i: int) -> str:
        """Absolute path of file i (negative i counts from the end); IndexError outside."""
    def relpath(self, i: int) -> str:
        """Path of file i relative to root, '/'-separated."""
    def size(self, i: int) -> int:
        """Size of file i in bytes (of the target, for a symlink)."""
    def paths(self, start: int, stop: int) -> list[str]:
        """Absolute paths of files [start, stop), clamped like a slice."""
    def sizes(self) -> npt.NDArray[np.uint64]:
        """A copy of all sizes, in listing order."""
    def mtimes_ns(self) -> npt.NDArray[np.int64]:
        """A copy of all modification times (ns since the epoch; of the target for a
        symlink), from the listing's own stat, in listing order."""
    def identity_digests(self) -> npt.NDArray[np.uint8]:
        """(n, 16): per file a hash of its absolute path, size and mtime (resume)."""

def list_files(
    root: str | bytes | os.PathLike[str] | os.PathLike[bytes],
    follow_symlinks: bool = True,
    *,
    threads: int = 0,
) -> FileList:
    """List the regular files under root recursively, sorted by relative path (byte-wise).

    Symlinks to files are listed under the link's path with the target's size; symlinks to
    folders are followed unless they loop back to an ancestor; broken symlinks are skipped;
    with follow_symlinks=False every symlink is skipped. threads: 0 = one per usable CPU
    (at most 16), all joined before returning. Releases the GIL while it walks.

    Raises FileNotFoundError (root missing), NotADirectoryError (root not a folder),
    PermissionError (an unreadable folder or entry, named), OSError (anything else).
    """

# --- end listing ---

# --- split ---

def split_by_count(n_items: int, batch_size: int) -> npt.NDArray[np.uint64]:
    """[begin, end) ranges of batch_size items, the last one possibly short: (n, 2) uint64.
    ValueError when batch_size is 0."""

# --- end split ---

# --- dispatch ---

class BatchState(int):
    PENDING: BatchState
    QUEUED: BatchState
    RUNNING: BatchState
    DONE: BatchState
    ERRORED: BatchState
    TIMED_OUT: BatchState
    CRASHED: BatchState
    FAILED: BatchState
    FINISHING: BatchState

class WorkerState(int):
    STARTING: WorkerState
    INIT: WorkerState
    IDLE: WorkerState
    RUNNING: WorkerState
    SHUTDOWN: WorkerState
    EXITED: WorkerState
    INIT_FAILED: WorkerState
    LOADING: WorkerState

class DispatchRegion:
    """Shared-memory dispatch region; create in the driver before forking workers."""

    def __init__(self, n_batches: int, n_workers: int, notify_fd: int = -1) -> None: ...
    @property
    def n_batches(self) -> int: ...
    @property
    def n_workers(self) -> int: ...
    @property
    def size(self) -> int: ...
    @property
    def batches_offset(self) -> int: ...
    @property
    def workers_offset(self) -> int: ...
    def queued_approx(self) -> int: ...
    # driver side
    def enqueue(self, batch: int, attempt: int = 0) -> bool: ...
    def enqueue_range(self, start: int, stop: int) -> int: ...
    def close(self) -> None: ...
    def drain_ended(self, max: int = ...) -> npt.NDArray[np.uint32]: ...
    def take_back(self, batch: int, attempt: int, process: int, why: BatchState) -> bool: ...
    def mark_failed(self, batch: int) -> bool: ...
    def reject_done(self, batch: int, attempt: int, process: int) -> bool: ...
    def reclaim_unclaimed(self, worker: int, process: int) -> int: ...
    def hand_over(
        self,
        worker: int,
        batch: int,
        attempt: int,
        from_process: int,
        to_process: int,
        in_run: bool,
    ) -> bool: ...
    def restore_done(
        self,
        batch: int,
        attempt: int,
        process: int,
        items_in: int,
        items_out: int,
        spool_offset: int,
        spool_length: int,
    ) -> None: ...
    def arm_driver_sleep(self) -> None: ...
    def disarm_driver_sleep(self) -> None: ...
    def reset_worker(self, worker: int, process: int) -> None: ...
    def set_worker_pid(self, worker: int, pid: int) -> None: ...
    # worker side
    def next_batch(
        self, worker: int, process: int, timeout_ms: int = -1, loading: bool = True
    ) -> tuple[int, int]:
        """(batch, attempt); batch -1 when closed and empty, -2 on timeout. Releases the GIL."""
    def finish(
        self,
        worker: int,
        batch: int,
        attempt: int,
        process: int,
        ok: bool,
        items_in: int,
        items_out: int,
        spool_offset: int,
        spool_length: int,
        error_code: int,
    ) -> bool: ...
    def set_worker_state(self, worker: int, state: WorkerState) -> None: ...
    # readers
    def batch_state(self, batch: int) -> tuple[int, int, int]: ...
    def batch_result(
        self, batch: int
    ) -> tuple[int, int, int, int, int, int, int, int, int, int]: ...
    def worker_info(self, worker: int) -> tuple[int, int, int, int, int, int, int]: ...
    def buffer(self) -> memoryview: ...

def region_layout() -> dict[str, int]: ...
def scan_expired(
    region: DispatchRegion,
    now_ns: int,
    run_timeout_ns: int,
    init_timeout_ns: int,
    load_timeout_ns: int = 0,
) -> list[tuple[int, int, int, int, int, str, int]]: ...
def monotonic_ns() -> int: ...

# --- end dispatch ---

# --- merge ---

def merge_records(
    out_path: str,
    spool_paths: list[str],
    batch: npt.ArrayLike,
    process: npt.ArrayLike,
    offset: npt.ArrayLike,
    length: npt.ArrayLike,
) -> int:
    """Copy the payloads of the given spool records, in order, to out_path (truncated)."""

# --- end merge ---

# --- records ---

class RecordScan:
    """Record boundaries of one delimited-text or JSON-lines file (records.hpp).

    Offsets are bytes into the file; lines are 1-based (CRLF, LF and a lone CR each end
    one). Pieces hold whole records, in order, every data record exactly once.
    """

    size: int
    header_begin: int  # the header record's bytes [header_begin, header_end); equal: none
    header_end: int
    data_begin: int
    end: int  # where the scan stopped: size, or just after max_records records
    fields: int  # fields of the first record (the header, when there is one); 0: none
    records: int
    @property
    def pieces(self) -> npt.NDArray[np.uint64]:
        """(n, 4) [begin, end, records, first_line] per piece."""
    @property
    def error(self) -> tuple[str, int, int, int, int] | None:
        """(kind, line, offset, expected, found) of the first bad record: kind is
        'field_count' or 'line_break_in_quotes' (a quoted value past its line without
        multi_line)."""

def scan_delimited(
    path: str | bytes | os.PathLike[str] | os.PathLike[bytes],
    *,
    delimiter: str = ",",
    quote: str = '"',
    quoting: bool = True,
    multi_line: bool = False,
    begin: int = 0,
    header: bool = False,
    expected_fields: int = 0,
    check_fields: bool = True,
    target_bytes: int = 0,
    max_records: int = 0,
    threads: int = 0,
    thread_bytes: int = 32 << 20,
) -> RecordScan:
    """Scan a delimited-text file with Arrow's CSV rules; cut it at the first record end at
    or after every data_begin + k * target_bytes (0: one piece). Every data record must
    have expected_fields fields (0: as many as the first record). Reads with pread (never
    maps the file); releases the GIL; helper threads (not with multi_line) are joined
    before it returns. Raises OSError subclasses naming the path, ValueError for a
    delimiter or quote that is not one byte."""

def scan_lines(
    path: str | bytes | os.PathLike[str] | os.PathLike[bytes],
    *,
    begin: int = 0,
    target_bytes: int = 0,
    max_records: int = 0,
) -> RecordScan:
    """Scan a JSON-lines file: records are lines holding more than JSON whitespace."""

# --- end records ---

# --- result writer ---

class ResultWriter:
    """A worker's spool writer: gathers records of quick run() calls, writes them with one
    write(), then finish()es each attempt (a batch is DONE only once its record is written)."""

    def __init__(
        self,
        region: DispatchRegion,
        worker: int,
        process: int,
        spool_fd: int,
        attempts_fd: int,
        where: str,
    ) -> None: ...
    def add(
        self,
        batch: int,
        attempt: int,
        ok: bool,
        payload: bytes,
        items_in: int,
        items_out: int,
        error_code: int,
        run_seconds: float,
    ) -> None: ...
    def flush(self) -> None: ...
    @property
    def pending(self) -> int: ...

# --- end result writer ---

# --- spool check ---

class SpoolChecker:
    """Checks spool records (magic, batch, length, CRC32) before they are accepted
    (spool_check.hpp). Driver-only; keeps one read-only fd per spool until close()."""

    def __init__(self) -> None: ...
    def add_spool(self, process: int, path: str) -> None: ...
    def check(
        self,
        batch: npt.ArrayLike,
        process: npt.ArrayLike,
        offset: npt.ArrayLike,
        length: npt.ArrayLike,
    ) -> npt.NDArray[np.bool_]:
        """Whether each record is intact; an unknown process or a short file is not."""
    def close(self) -> None: ...

# --- end spool check ---

# --- csv rows ---

def format_csv_rows(
    arrays: list[npt.NDArray[Any]], kinds: str, n_rows: int, sep: str, na_rep: str
) -> bytes | None:
    """Rows as DataFrame.to_csv(sep, na_rep, header=False, index=False) writes them, UTF-8
    (csv_rows.hpp); None where to_csv would quote a field or a str is not UTF-8 (lone
    surrogates). kinds: one numpy dtype.char per column among b h i q B H I Q d ? O."""

# --- end csv rows ---

# --- attempt rows ---

def join_attempt_rows(
    part: bytes,
    batch: npt.ArrayLike,
    attempt: npt.ArrayLike,
    start_ns: npt.ArrayLike,
    end_ns: npt.ArrayLike,
    place: bytes,
) -> bytes:
    """A worker part's valid attempt rows (attempt_rows.hpp), each completed with the
    attempt + 1, UTC ISO start and end of the first accepted attempt of its batch in the
    arrays, and place (b"pid,node_index,host"); five empty columns where none is given."""

# --- end attempt rows ---
