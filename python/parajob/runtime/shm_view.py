"""Python's view of the shared dispatch region (cpp/include/parajob/shm_layout.hpp).

The driver reads every batch slot at once through these numpy dtypes (counting states for
progress, finding spool records at merge time) instead of one C++ call per batch. The
layout must match C++ byte for byte; tests/test_shm_layout.py compares it with
``_core.region_layout()``.
"""

from __future__ import annotations

import numpy as np

from parajob import _core

# Error codes a worker publishes in the batch slot of an ERRORED attempt.
ERROR_RAISED = 1  # run() raised (or materialising the mini-batch did)
ERROR_WRONG_TYPE = 2  # run() returned something that is not a list, tuple or DataFrame

BATCH_SLOT = np.dtype(
    {
        "names": [
            "word",
            "start_ns",
            "end_ns",
            "items_in",
            "items_out",
            "spool_offset",
            "spool_length",
            "error_code",
        ],
        "formats": ["<u8", "<i8", "<i8", "<u8", "<u8", "<u8", "<u8", "<i8"],
        "offsets": [0, 8, 16, 24, 32, 40, 48, 56],
        "itemsize": 64,
    }
)

WORKER_SLOT = np.dtype(
    {
        "names": [
            "pid",
            "process",
            "state",
            "heartbeat_ns",
            "current_batch",
            "phase_start_ns",
            "batches_done",
            "popped",
        ],
        "formats": ["<i4", "<u4", "<u4", "<i8", "<i8", "<i8", "<u8", "<u8"],
        "offsets": [0, 4, 8, 16, 24, 32, 40, 48],
        "itemsize": 64,
    }
)


def batch_slots(region: _core.DispatchRegion) -> np.ndarray:
    """A read-only, live view of all batch slots (no copy).

    Fields other than ``word`` are only meaningful for a batch whose state is final (DONE,
    ERRORED, FAILED): a worker may be writing them otherwise.
    """
    return np.frombuffer(
        region.buffer(), dtype=BATCH_SLOT, count=region.n_batches, offset=region.batches_offset
    )


def gather(slots: np.ndarray, batches: np.ndarray) -> np.ndarray:
    """A copy of the slots of ``batches`` (a BATCH_SLOT array, one row per batch).

    One 64-byte copy per slot: numpy copies a structured dtype with explicit offsets field
    by field (8 small transfers a slot; py-spy of a 100,000 one-file mini-batch job: ~0.2 s
    of the driver's CPU in `slots[batches]`), a plain V64 item in one go (~10x faster).
    Only for slots in a final state (DONE, ERRORED: what the done ring hands over), which
    no worker writes any more: a copy of a slot a worker is writing could be torn."""
    raw = slots.view(_RAW_SLOT)
    return np.take(raw, batches).view(BATCH_SLOT)


_RAW_SLOT = np.dtype(("V", BATCH_SLOT.itemsize))


def worker_slots(region: _core.DispatchRegion) -> np.ndarray:
    return np.frombuffer(
        region.buffer(), dtype=WORKER_SLOT, count=region.n_workers, offset=region.workers_offset
    )


def unpack_states(words: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Split packed state words into (state, attempt, process) arrays."""
    words = words.astype(np.uint64, copy=False)
    state = (words & np.uint64(0xFF)).astype(np.uint8)
    attempt = ((words >> np.uint64(8)) & np.uint64(0xFFFFFF)).astype(np.uint32)
    process = (words >> np.uint64(32)).astype(np.uint32)
    return state, attempt, process


def distinct_processes(process: np.ndarray) -> list[int]:
    """The distinct worker process ids in ``process``, ascending. A sort and a compare of
    neighbours rather than np.unique, which in numpy 2 imports numpy.ma on its first call
    (~15 ms of the driver's CPU at its first checkpoint, while the workers need the cores);
    not np.bincount: a Dask node's virtual process ids start at 1 << 30."""
    ids = np.sort(np.asarray(process))
    if not len(ids):
        return []
    first = np.ones(len(ids), dtype=bool)
    first[1:] = ids[1:] != ids[:-1]
    return [int(p) for p in ids[first].tolist()]
