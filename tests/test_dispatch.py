"""The shared-memory dispatch region under real concurrency: forked producers and
consumers, every batch claimed exactly once, the claim/finish/take-back protocol."""

from __future__ import annotations

import os
import signal

import numpy as np
import pytest

from parajob import _core
from parajob.runtime import shm_view

BatchState = _core.BatchState


def _fork(body) -> int:  # type: ignore[no-untyped-def]
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            body()
            code = 0
        finally:
            os._exit(code)
    return pid


def _wait_all(pids: list[int], timeout_s: float = 60.0) -> None:
    """Wait for children; kill them and fail rather than hang."""
    import time

    deadline = time.monotonic() + timeout_s
    pending = set(pids)
    while pending:
        for pid in list(pending):
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                pending.discard(pid)
                assert os.waitstatus_to_exitcode(status) == 0, f"child {pid} failed"
        if time.monotonic() > deadline:
            for pid in pending:
                os.kill(pid, signal.SIGKILL)
            pytest.fail(f"children {pending} still running after {timeout_s}s")
        time.sleep(0.01)


def test_many_producers_and_consumers_claim_every_id_exactly_once(tmp_path) -> None:
    n_batches, n_producers, n_consumers = 60_000, 3, 4
    region = _core.DispatchRegion(n_batches, n_consumers)
    per_producer = n_batches // n_producers
    out = [tmp_path / f"consumer{c}.txt" for c in range(n_consumers)]

    def producer(p: int):  # type: ignore[no-untyped-def]
        return lambda: [region.enqueue(b) for b in range(p * per_producer, (p + 1) * per_producer)]

    def consumer(c: int):  # type: ignore[no-untyped-def]
        def body() -> None:
            claimed = []
            while True:
                batch, attempt = region.next_batch(c, c + 1, 5000)
                if batch == -1:
                    break
                assert batch >= 0, "timed out waiting for work"
                claimed.append(batch)
                assert region.finish(c, batch, attempt, c + 1, True, 1, 1, 0, 0, 0)
            out[c].write_text("\n".join(map(str, claimed)))

        return body

    consumers = [_fork(consumer(c)) for c in range(n_consumers)]
    producers = [_fork(producer(p)) for p in range(n_producers)]
    _wait_all(producers)
    # All pushed; the consumers drain the rest, then see the close.
    region.close()
    _wait_all(consumers)

    claimed = np.concatenate(
        [np.array(f.read_text().split(), dtype=np.int64) for f in out if f.read_text()]
    )
    assert len(claimed) == n_batches
    assert np.array_equal(np.sort(claimed), np.arange(n_batches))
    ended = region.drain_ended()
    assert np.array_equal(np.sort(ended), np.arange(n_batches))
    state, _, _ = shm_view.unpack_states(shm_view.batch_slots(region)["word"])
    assert (state == int(BatchState.DONE)).all()


def test_idle_consumer_blocks_then_wakes_on_enqueue() -> None:
    region = _core.DispatchRegion(4, 1)
    r, w = os.pipe()

    def body() -> None:
        batch, _ = region.next_batch(0, 1, 30_000)  # blocks on the futex until the push
        os.write(w, str(batch).encode())

    pid = _fork(body)
    # The consumer is asleep (or about to be); the push must wake it.
    region.enqueue(2)
    _wait_all([pid])
    assert os.read(r, 16) == b"2"


def test_next_batch_times_out_with_minus_two_and_closes_with_minus_one() -> None:
    region = _core.DispatchRegion(2, 1)
    assert region.next_batch(0, 1, 10)[0] == -2
    region.close()
    assert region.next_batch(0, 1, 10)[0] == -1


def test_finish_after_take_back_loses_and_publishes_nothing() -> None:
    region = _core.DispatchRegion(1, 1)
    region.enqueue(0)
    batch, attempt = region.next_batch(0, 5, 0)
    assert region.take_back(batch, attempt, 5, BatchState.TIMED_OUT)
    assert not region.finish(0, batch, attempt, 5, True, 1, 1, 123, 45, 0)
    assert region.batch_state(0) == (int(BatchState.TIMED_OUT), 0, 5)
    assert len(region.drain_ended()) == 0
    assert region.batch_result(0)[5] == 0  # the loser's spool offset never reached the slot


def test_take_back_loses_after_finish() -> None:
    region = _core.DispatchRegion(1, 1)
    region.enqueue(0)
    batch, attempt = region.next_batch(0, 5, 0)
    assert region.finish(0, batch, attempt, 5, True, 1, 1, 0, 0, 0)
    assert not region.take_back(batch, attempt, 5, BatchState.TIMED_OUT)
    assert region.batch_state(0)[0] == int(BatchState.DONE)


def test_retry_is_claimed_with_the_next_attempt_number() -> None:
    region = _core.DispatchRegion(1, 1)
    region.enqueue(0)
    batch, attempt = region.next_batch(0, 1, 0)
    assert region.finish(0, batch, attempt, 1, False, 1, 0, 0, 0, 1)
    assert region.batch_state(0)[0] == int(BatchState.ERRORED)
    region.enqueue(0, attempt + 1)
    assert region.next_batch(0, 2, 0) == (0, 1)
    assert region.batch_state(0) == (int(BatchState.RUNNING), 1, 2)


def test_watchdog_reports_only_overrunning_runs() -> None:
    region = _core.DispatchRegion(2, 2)
    region.enqueue_range(0, 2)
    region.reset_worker(0, 1)
    region.reset_worker(1, 2)
    b0, _ = region.next_batch(0, 1, 0)  # claimed: LOADING, under the load timeout
    now = _core.monotonic_ns()
    assert [
        (e[0], e[3], e[5]) for e in _core.scan_expired(region, now + 2 * 10**9, 10**12, 0, 10**9)
    ] == [(0, b0, "load")]
    region.set_worker_state(0, _core.WorkerState.RUNNING)  # run() started: the run clock
    now = _core.monotonic_ns()
    assert _core.scan_expired(region, now, 10**12, 0, 10**9) == []
    expired = _core.scan_expired(region, now + 2 * 10**9, 10**9, 0, 0)
    assert [(e[0], e[3], e[5]) for e in expired] == [(0, b0, "run")]


def test_a_second_enqueue_of_an_attempt_is_refused() -> None:
    region = _core.DispatchRegion(2, 1)
    assert region.enqueue(0, 0)
    assert not region.enqueue(0, 0) and not region.enqueue(0, 1)  # QUEUED: refused
    batch, attempt = region.next_batch(0, 5, 0)
    assert not region.enqueue(batch, attempt + 1)  # RUNNING: the worker owns it
    assert region.take_back(batch, attempt, 5, BatchState.TIMED_OUT)
    assert not region.enqueue(batch, attempt)  # the same attempt again: refused
    assert region.enqueue(batch, attempt + 1)
    assert not region.enqueue(batch, attempt + 2)  # queued already
    assert region.queued_approx() == 1
    assert not region.mark_failed(batch)  # only an ended attempt can fail for good


def test_reclaim_takes_back_only_a_popped_attempt_that_was_never_claimed() -> None:
    region = _core.DispatchRegion(2, 1)
    region.reset_worker(0, 7)
    assert region.reclaim_unclaimed(0, 7) == -1  # popped nothing yet
    region.enqueue_range(0, 2)
    batch, attempt = region.next_batch(0, 7, 0)  # claimed: RUNNING, not reclaimable
    assert region.reclaim_unclaimed(0, 7) == -1
    assert region.take_back(batch, attempt, 7, BatchState.TIMED_OUT)
    assert region.enqueue(batch, attempt + 1)  # requeued: QUEUED(1), a different attempt
    assert region.reclaim_unclaimed(0, 7) == -1
    assert region.batch_state(batch) == (int(BatchState.QUEUED), 1, 0)
