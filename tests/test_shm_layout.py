"""Python's view of the shared region must match C++'s layout byte for byte."""

from parajob import _core
from parajob.runtime import shm_view


def test_batch_slot_layout_matches_cpp() -> None:
    layout = _core.region_layout()
    assert shm_view.BATCH_SLOT.itemsize == layout["BatchSlot.size"] == 64
    for name in shm_view.BATCH_SLOT.names:
        assert shm_view.BATCH_SLOT.fields[name][1] == layout[f"BatchSlot.{name}"], name


def test_worker_slot_layout_matches_cpp() -> None:
    layout = _core.region_layout()
    assert shm_view.WORKER_SLOT.itemsize == layout["WorkerSlot.size"] == 64
    for name in shm_view.WORKER_SLOT.names:
        assert shm_view.WORKER_SLOT.fields[name][1] == layout[f"WorkerSlot.{name}"], name


def test_numpy_view_reads_what_cpp_wrote() -> None:
    region = _core.DispatchRegion(8, 2)
    region.enqueue_range(0, 8)
    batch, attempt = region.next_batch(1, 7, 0)
    assert region.finish(1, batch, attempt, 7, True, 3, 2, 100, 40, 0)
    slots = shm_view.batch_slots(region)
    state, attempts, process = shm_view.unpack_states(slots["word"])
    assert state[batch] == int(_core.BatchState.DONE)
    assert (attempts[batch], process[batch]) == (0, 7)
    assert (slots["items_in"][batch], slots["items_out"][batch]) == (3, 2)
    assert (slots["spool_offset"][batch], slots["spool_length"][batch]) == (100, 40)
    assert all(state[b] == int(_core.BatchState.QUEUED) for b in range(8) if b != batch)
    workers = shm_view.worker_slots(region)
    assert workers["current_batch"][1] == -1 and workers["batches_done"][1] == 1
