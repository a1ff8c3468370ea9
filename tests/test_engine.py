"""The engine alone, driven by a scripted fake executor: every transition of an attempt.

No process is forked. The fake plays the workers in this thread through the same region
API the real workers use (next_batch to claim, a real C++ ResultWriter or finish() to end
an attempt), and reports deaths and expired deadlines as the local executor would. Each
test is one short script: what the workers do on each of the engine's waits. When the
script runs out, every live worker claims and finishes mini-batches until the queue is
closed, then exits normally, so every run ends.

    engine.run() --spawn/kill/terminate--> FakeExecutor --next_batch/ResultWriter--> region
          ^                                     | scripted steps, one per wait()
          +--drain_ended() / WorkerDied / DeadlineExpired / Interrupted --------------+
"""

from __future__ import annotations

import ctypes
import os
import signal
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from parajob import _core
from parajob.executors.base import (
    DeadlineExpired,
    Event,
    ExitStatus,
    Interrupted,
    OnThisMachine,
    Worker,
    WorkerDied,
)
from parajob.runtime import shm_view
from parajob.runtime.accounting import Limits
from parajob.runtime.engine import Engine, EngineResult
from parajob.runtime.isolation import Bisection
from parajob.runtime.journal import (
    Accepted,
    JournalWriter,
    journal_path,
    journal_start,
    read_journal,
)
from parajob.runtime.layout import StepLayout
from parajob.runtime.options import RunOptions
from parajob.runtime.report import AttemptLog, Progress, worker_attempts_part
from parajob.runtime.spool import spool_path

S = _core.BatchState
ITEMS = 2  # items per mini-batch in the fake plan


class FakePlan:
    """n mini-batches of ITEMS items each; nothing is ever materialised."""

    loads_data = False

    def __init__(self, n: int) -> None:
        self.n_batches, self.n_items = n, n * ITEMS

    def items_in(self, batch: int) -> int:
        return ITEMS

    def describe(self, batch: int) -> str:
        return f"mini-batch {batch}"


@dataclass(eq=False)
class FakeWorker(Worker):
    writer: _core.ResultWriter | None = None
    fds: tuple[int, ...] = ()


Step = Callable[["FakeExecutor"], list[Event] | None]


@dataclass
class FakeExecutor(OnThisMachine):  # node_host, attempt_times: this machine
    """Workers played in this thread. ``script``: one step per wait(), in order."""

    region: _core.DispatchRegion
    layout: StepLayout
    script: list[Step]
    broken_spool: set[int] = field(default_factory=set)  # processes whose writes fail
    live: dict[int, FakeWorker] = field(default_factory=dict)
    spawned: list[FakeWorker] = field(default_factory=list)
    claims: list[tuple[int, int]] = field(default_factory=list)  # (batch, attempt) claimed
    dying: list[tuple[Worker, int]] = field(default_factory=list)  # killed: gone at wait()
    deadlines: list[tuple[DeadlineExpired, Callable[[], object] | None]] = field(
        default_factory=list
    )

    # -- the executor interface --

    def start(self) -> None:
        pass

    def spawn(self, slot: int, node: int, local_rank: int) -> Worker:
        process = len(self.spawned) + 1
        self.region.reset_worker(slot, process)
        self.region.set_worker_pid(slot, os.getpid())
        spool = spool_path(self.layout.spool_dir, process)
        spool.touch()
        # A spool opened read-only: every write fails, so gathered records stay unpublished.
        flags = os.O_RDONLY if process in self.broken_spool else os.O_WRONLY | os.O_APPEND
        fds = (
            os.open(spool, flags),
            os.open(
                worker_attempts_part(self.layout, process), os.O_WRONLY | os.O_CREAT | os.O_APPEND
            ),
        )
        worker = FakeWorker(slot, process, node, local_rank, fds=fds)
        worker.writer = _core.ResultWriter(
            self.region, slot, process, fds[0], fds[1], f"{worker.node_name},{worker.name}"
        )
        self.region.set_worker_state(slot, _core.WorkerState.IDLE)
        self.live[slot] = worker
        self.spawned.append(worker)
        return worker

    def kill(self, worker: Worker, because: str) -> None:
        """Like SIGKILL: the worker may still run a little (the next script step) before
        its death is seen at the end of the next wait()."""
        if worker.killed_because is None:
            worker.killed_because = because
            self.dying.append((worker, signal.SIGKILL))

    def terminate(self, worker: Worker) -> None:
        self.dying.append((worker, signal.SIGTERM))

    def wait(self, timeout: float) -> list[Event]:
        events: list[Event] = []
        if self.script:
            events += self.script.pop(0)(self) or []
        else:
            events += self.default_step()
        for worker, sig in self.dying:
            if self.live.get(worker.slot) is worker:
                events.append(self.die(worker, sig))
        self.dying = []
        return events

    def expired(self, limits: Limits) -> list[DeadlineExpired]:
        found = []
        for event, just_before in self.deadlines:
            if just_before is not None:
                just_before()  # lands between the scan and the engine's take_back
            found.append(event)
        self.deadlines = []
        return found

    def wake(self) -> None:
        pass

    def tend(self) -> None:
        pass

    def stop(self) -> None:
        pass

    def close(self) -> None:
        pass

    # -- what a worker does --

    def worker(self, slot: int = 0) -> FakeWorker:
        return self.live[slot]

    def claim(self, slot: int = 0) -> tuple[int, int]:
        w = self.live[slot]
        batch, attempt = self.region.next_batch(slot, w.process, 0, False)
        if batch >= 0:
            self.claims.append((batch, attempt))
        return batch, attempt

    def succeed(
        self,
        batch: int,
        attempt: int,
        slot: int = 0,
        items_out: int = ITEMS,
        run_seconds: float = 1.0,
    ) -> None:
        """run() returned: its record through the ResultWriter (published at once unless
        run_seconds is under 1 ms: then gathered for up to 5 ms)."""
        writer = self.live[slot].writer
        assert writer is not None
        writer.add(
            batch,
            attempt,
            True,
            f"row {batch}\n".encode() * items_out,
            ITEMS,
            items_out,
            0,
            run_seconds,
        )

    def error(self, batch: int, attempt: int, slot: int = 0) -> None:
        writer = self.live[slot].writer
        assert writer is not None
        writer.add(
            batch,
            attempt,
            False,
            b"Traceback (most recent call last):\nValueError: bad\n",
            ITEMS,
            0,
            shm_view.ERROR_RAISED,
            0.0,
        )

    def die(self, worker: Worker, sig: int = signal.SIGKILL) -> WorkerDied:
        """The worker's process is gone: its writer and files with it."""
        assert isinstance(worker, FakeWorker)
        del self.live[worker.slot]
        worker.writer = None  # gathered records die with it
        for fd in worker.fds:
            os.close(fd)
        state = self.region.worker_info(worker.slot)[2]
        return WorkerDied(worker, ExitStatus(None, int(sig), 0), state)

    def expire(
        self,
        batch: int,
        attempt: int,
        slot: int = 0,
        just_before: Callable[[], object] | None = None,
    ) -> None:
        self.deadlines.append(
            (DeadlineExpired(self.live[slot], batch, attempt, "run", 61.0), just_before)
        )

    def default_step(self) -> list[Event]:
        events: list[Event] = []
        for slot in list(self.live):
            if any(w is self.live[slot] for w, _ in self.dying):
                continue  # killed: does nothing more
            batch, attempt = self.claim(slot)
            if batch >= 0:
                self.succeed(batch, attempt, slot)
            elif batch == -1:  # closed and empty: shutdown() and a normal exit
                self.region.set_worker_state(slot, _core.WorkerState.EXITED)
                died = self.die(self.live[slot])
                events.append(WorkerDied(died.worker, ExitStatus(0, None, 0), died.state))
        return events


@dataclass
class Ran:
    result: EngineResult
    fake: FakeExecutor
    region: _core.DispatchRegion
    layout: StepLayout

    def state(self, batch: int) -> tuple[int, int]:
        """(state, attempt) of a batch slot after the run."""
        state, attempt, _process = self.region.batch_state(batch)
        return state, attempt

    def attempt_rows(self) -> list[str]:
        """Failed attempts' rows (the engine's own part of processed_mini-batches.csv)."""
        text = self.layout.processed_csv.read_text(encoding="utf-8")
        return [
            row
            for row in text.splitlines()[1:]
            if not row.endswith(",") and ",succeeded," not in row
        ]

    def journalled(self) -> list[int]:
        journal = read_journal(journal_path(self.layout.root))
        assert journal is not None
        return sorted(journal.accepted.batch.astype(int).tolist())


def run_engine(
    tmp_path: Path,
    n: int,
    script: list[Step],
    *,
    workers: int = 1,
    limits: Limits | None = None,
    restored: Accepted | None = None,
    options: RunOptions | None = None,
    broken_spool: frozenset[int] = frozenset(),
    plan: Any = None,
    extra_slots: int = 0,
    executor: Callable[[_core.DispatchRegion, StepLayout], FakeExecutor] | None = None,
    isolation: Bisection | None = None,
) -> Ran:
    """plan: instead of FakePlan(n); extra_slots: region slots after the n mini-batches
    (isolation's sub-batches); executor: makes the fake instead of FakeExecutor."""
    layout = StepLayout(tmp_path / "step")
    layout.create()
    region = _core.DispatchRegion(n + extra_slots, workers, -1)
    fake = (
        executor(region, layout)
        if executor is not None
        else FakeExecutor(region, layout, list(script), set(broken_spool))
    )
    attempt_log = AttemptLog(layout)
    progress = Progress(layout, "step", n, quiet=True)
    journal = JournalWriter(
        journal_path(layout.root), layout.spool_dir, journal_start(b"", n, n * ITEMS, restored)
    )
    engine = Engine(
        fake,
        region,
        plan if plan is not None else FakePlan(n),
        layout,
        1,
        workers,  # type: ignore[arg-type]
        limits or Limits(max_retries=2),
        attempt_log,
        progress,
        journal,
        restored if restored is not None else Accepted.none(),
        options=options,
        isolation=isolation,
    )
    try:
        result = engine.run()
    finally:
        journal.close()
        attempt_log.close()
        progress.close()
    assert not fake.live, "the engine returned with a worker still running"
    return Ran(result, fake, region, layout)


def steps(*actions: Callable[[FakeExecutor], object]) -> list[Step]:
    """Script steps that report no event themselves."""

    def quiet(action: Callable[[FakeExecutor], object]) -> Step:
        def step(fake: FakeExecutor) -> None:
            action(fake)

        return step

    return [quiet(a) for a in actions]


# ---- queued -> running -> done -------------------------------------------------------


def test_every_batch_claimed_once_finished_and_accepted(tmp_path: Path) -> None:
    ran = run_engine(tmp_path, 4, [], workers=2)
    t = ran.result.tally
    assert (t.done_batches, t.failed_batches, t.failed_attempts) == (4, 0, 0)
    assert sorted(ran.fake.claims) == [(0, 0), (1, 0), (2, 0), (3, 0)]
    assert [ran.state(b) for b in range(4)] == [(int(S.DONE), 0)] * 4
    assert (t.items_in, t.items_out) == (4 * ITEMS, 4 * ITEMS)
    assert ran.journalled() == [0, 1, 2, 3]
    assert ran.result.stop_reason is None and len(ran.fake.spawned) == 2


# ---- errored -> retried -> failed for good ------------------------------------------


def _claim_and_error(f: FakeExecutor) -> None:
    batch, attempt = f.claim()
    f.error(batch, attempt)


def test_errored_attempt_is_retried_then_accepted(tmp_path: Path) -> None:
    ran = run_engine(tmp_path, 1, steps(_claim_and_error))
    t = ran.result.tally
    assert (t.done_batches, t.failed_batches, t.failed_attempts) == (1, 0, 1)
    assert ran.fake.claims == [(0, 0), (0, 1)]
    assert ran.state(0) == (int(S.DONE), 1)
    assert [r.split(",")[7] for r in ran.attempt_rows()] == ["raised"]


def test_errored_past_max_retries_fails_for_good(tmp_path: Path) -> None:
    ran = run_engine(tmp_path, 1, steps(*[_claim_and_error] * 3), limits=Limits(max_retries=2))
    t = ran.result.tally
    assert (t.done_batches, t.failed_batches, t.failed_attempts) == (0, 1, 3)
    assert ran.fake.claims == [(0, 0), (0, 1), (0, 2)]
    assert ran.state(0)[0] == int(S.FAILED)
    (failure,) = ran.result.failures
    assert (failure.batch, failure.attempts, failure.status, failure.error_type) == (
        0,
        3,
        "raised",
        "ValueError",
    )
    assert t.failed_items == ITEMS and ran.journalled() == []
    assert [r.split(",")[7] for r in ran.attempt_rows()] == ["raised"] * 3


# ---- a timeout racing a finish -------------------------------------------------------


def test_timeout_loses_to_a_finish_published_after_the_scan(tmp_path: Path) -> None:
    def claim_then_overrun(f: FakeExecutor) -> None:
        batch, attempt = f.claim()
        # The scan sees RUNNING past its deadline; the record is published just after.
        f.expire(batch, attempt, just_before=lambda: f.succeed(batch, attempt))

    ran = run_engine(tmp_path, 1, steps(claim_then_overrun))
    t = ran.result.tally
    assert (t.done_batches, t.failed_attempts) == (1, 0)
    assert ran.state(0) == (int(S.DONE), 0)
    assert ran.fake.spawned[0].killed_because is None  # nobody was killed
    assert len(ran.fake.spawned) == 1


def test_timeout_wins_and_the_late_finish_is_an_orphan(tmp_path: Path) -> None:
    held: list[tuple[int, int]] = []

    def claim_then_overrun(f: FakeExecutor) -> None:
        held.append(f.claim())
        f.expire(*held[0])

    def finish_too_late(f: FakeExecutor) -> None:
        f.succeed(*held[0])  # its publish CAS loses: TIMED_OUT already

    ran = run_engine(tmp_path, 1, steps(claim_then_overrun, finish_too_late))
    t = ran.result.tally
    assert (t.done_batches, t.failed_attempts) == (1, 1)
    assert ran.fake.claims == [(0, 0), (0, 1)]
    assert ran.state(0) == (int(S.DONE), 1)  # the retry's record, not the orphan
    assert "retry_settings.timeout" in (ran.fake.spawned[0].killed_because or "")
    assert len(ran.fake.spawned) == 2  # killed and replaced
    assert [r.split(",")[7] for r in ran.attempt_rows()] == ["timed_out"]


# ---- deaths ---------------------------------------------------------------------------


def test_death_after_finish_reruns_nothing_and_spends_no_try(tmp_path: Path) -> None:
    def finish_then_die(f: FakeExecutor) -> list[Event]:
        batch, attempt = f.claim()
        f.succeed(batch, attempt)  # in the done ring, not yet drained
        return [f.die(f.worker())]

    ran = run_engine(tmp_path, 2, [finish_then_die])
    t = ran.result.tally
    assert (t.done_batches, t.failed_attempts) == (2, 0)
    assert ran.fake.claims == [(0, 0), (1, 0)]
    assert ran.state(0) == (int(S.DONE), 0)
    assert len(ran.fake.spawned) == 2  # the slot got a fresh worker


def test_death_in_run_spends_a_try(tmp_path: Path) -> None:
    def claim_then_die(f: FakeExecutor) -> list[Event]:
        f.claim()
        return [f.die(f.worker())]

    ran = run_engine(tmp_path, 1, [claim_then_die])
    t = ran.result.tally
    assert (t.done_batches, t.failed_attempts) == (1, 1)
    assert ran.fake.claims == [(0, 0), (0, 1)]
    assert ran.state(0) == (int(S.DONE), 1)
    assert [r.split(",")[7] for r in ran.attempt_rows()] == ["crashed"]


def test_death_in_run_past_max_retries_fails_for_good(tmp_path: Path) -> None:
    def claim_then_die(f: FakeExecutor) -> list[Event]:
        f.claim()
        return [f.die(f.worker())]

    ran = run_engine(tmp_path, 1, [claim_then_die], limits=Limits(max_retries=0))
    t = ran.result.tally
    assert (t.done_batches, t.failed_batches, t.failed_attempts) == (0, 1, 1)
    assert ran.result.failures[0].status == "crashed"


def test_death_holding_gathered_records_reruns_them_free(tmp_path: Path) -> None:
    def gather_then_die_in_run(f: FakeExecutor) -> list[Event]:
        b0, a0 = f.claim()
        f.succeed(b0, a0, run_seconds=0.0001)  # quick: gathered, its publish fails (spool)
        f.claim()  # the next one, now in run()
        return [f.die(f.worker())]

    ran = run_engine(tmp_path, 2, [gather_then_die_in_run], broken_spool=frozenset({1}))
    t = ran.result.tally
    assert (t.done_batches, t.failed_batches) == (2, 0)
    assert t.failed_attempts == 1  # batch 1 (in run()) spent a try; batch 0 did not
    assert ran.fake.claims[:2] == [(0, 0), (1, 0)]
    assert sorted(ran.fake.claims[2:]) == [(0, 1), (1, 1)]
    rows = ran.attempt_rows()
    assert [(r.split(",")[0], r.split(",")[7]) for r in rows] == [("1", "crashed")]


def _mark_popped(region: _core.DispatchRegion, slot: int, batch: int, attempt: int) -> None:
    """A worker that popped (batch, attempt) and died before its claim CAS: next_batch()
    pops and claims in one call, so the fake writes the acknowledgement (the worker slot's
    ``popped`` word) itself. The id it "popped" stays in the ring; its stale attempt number
    makes whoever pops it later skip it (next_batch's claim checks the attempt)."""
    view = np.frombuffer(region.buffer(), dtype=np.uint8)
    address = (
        view.__array_interface__["data"][0]
        + region.workers_offset
        + slot * shm_view.WORKER_SLOT.itemsize
        + shm_view.WORKER_SLOT.fields["popped"][1]
    )
    ctypes.c_uint64.from_address(address).value = (1 << 63) | (attempt << 32) | batch


def test_popped_never_claimed_is_reclaimed_free(tmp_path: Path) -> None:
    def pop_then_die(f: FakeExecutor) -> list[Event]:
        _mark_popped(f.region, 0, 0, 0)
        return [f.die(f.worker())]

    ran = run_engine(tmp_path, 1, [pop_then_die])
    t = ran.result.tally
    assert (t.done_batches, t.failed_attempts) == (1, 0)
    assert ran.fake.claims == [(0, 1)]  # attempt 0 was taken back, never run
    assert ran.attempt_rows() == []


def test_corrupt_record_is_discarded_and_rerun(tmp_path: Path) -> None:
    def finish_with_garbage(f: FakeExecutor) -> None:
        w = f.worker()
        batch, attempt = f.claim()
        os.write(w.fds[0], b"\0" * 64)  # not a record: the CRC check fails
        f.region.finish(w.slot, batch, attempt, w.process, True, ITEMS, ITEMS, 0, 64, 0)

    ran = run_engine(tmp_path, 1, steps(finish_with_garbage))
    t = ran.result.tally
    assert (t.done_batches, t.failed_attempts) == (1, 1)
    assert ran.fake.claims == [(0, 0), (0, 1)]
    assert ran.state(0) == (int(S.DONE), 1)
    assert "CRC32" in (ran.fake.spawned[0].killed_because or "")
    assert [r.split(",")[7] for r in ran.attempt_rows()] == ["corrupt_record"]
    assert len(ran.fake.spawned) == 2


# ---- limits and stops ---------------------------------------------------------------


def test_mini_batch_error_threshold_stops_the_step(tmp_path: Path) -> None:
    ran = run_engine(
        tmp_path,
        5,
        steps(_claim_and_error),
        limits=Limits(max_retries=0, mini_batch_error_threshold=0),
    )
    t = ran.result.tally
    assert (t.failed_batches, t.failed_attempts, t.settled_batches) == (1, 1, 1)
    assert "mini_batch_error_threshold 0" in (ran.result.stop_reason or "")
    assert ran.fake.claims == [(0, 0)] and not ran.result.interrupted


def test_error_threshold_counts_short_returns(tmp_path: Path) -> None:
    def short_return(f: FakeExecutor) -> None:
        batch, attempt = f.claim()
        f.succeed(batch, attempt, items_out=0)  # 2 items missing

    ran = run_engine(tmp_path, 5, steps(short_return), limits=Limits(error_threshold=1))
    t = ran.result.tally
    assert (t.done_batches, t.failed_batches, t.failed_items) == (1, 1, ITEMS)
    assert "error_threshold 1" in (ran.result.stop_reason or "")
    assert ran.fake.claims == [(0, 0)]


def test_cancel_stops_between_mini_batches_resumable(tmp_path: Path) -> None:
    cancel = threading.Event()

    def one_then_cancel(f: FakeExecutor) -> None:
        batch, attempt = f.claim()
        f.succeed(batch, attempt)
        cancel.set()

    ran = run_engine(tmp_path, 5, steps(one_then_cancel), options=RunOptions(cancel=cancel))
    assert ran.result.cancelled and ran.result.interrupted
    assert "cancelled by the caller" in (ran.result.stop_reason or "")
    assert ran.result.tally.done_batches == 1 and ran.fake.claims == [(0, 0)]
    assert ran.journalled() == [0]  # what was accepted is kept for --resume


def test_interrupted_event_stops_as_a_signal_would(tmp_path: Path) -> None:
    ran = run_engine(tmp_path, 3, [lambda f: [Interrupted()]])
    assert ran.result.interrupted and not ran.result.cancelled
    assert "interrupted by SIGINT" in (ran.result.stop_reason or "")
    assert ran.fake.claims == []


def test_restored_batches_are_never_rerun(tmp_path: Path) -> None:
    def arr(*values: int) -> np.ndarray:
        return np.array(values, dtype=np.uint64)

    restored = Accepted(
        arr(0, 2),
        arr(1, 0),
        arr(7, 7),
        arr(0, 40),
        arr(40, 40),
        arr(ITEMS, ITEMS),
        arr(ITEMS, ITEMS),
    )
    ran = run_engine(tmp_path, 4, [], restored=restored)
    t = ran.result.tally
    assert (t.done_batches, t.failed_attempts) == (4, 0)
    assert sorted(ran.fake.claims) == [(1, 0), (3, 0)]
    assert ran.state(0) == (int(S.DONE), 1) and ran.state(2) == (int(S.DONE), 0)
    assert ran.journalled() == [0, 1, 2, 3]


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGSEGV])
def test_death_while_idle_costs_nothing(tmp_path: Path, sig: int) -> None:
    ran = run_engine(tmp_path, 2, [lambda f: [f.die(f.worker(), sig)]])
    t = ran.result.tally
    assert (t.done_batches, t.failed_attempts, t.init_failures) == (2, 0, 0)
    assert ran.fake.claims == [(0, 0), (1, 0)]


def test_a_cancel_set_before_the_start_runs_nothing(tmp_path: Path) -> None:
    """A caller's cancel already set when the step starts: no worker is started, so no
    mini-batch runs (the workers used to be started, and what they finished before the
    first check was accepted)."""
    cancel = threading.Event()
    cancel.set()

    def claim_all(f: FakeExecutor) -> None:
        if f.live:  # only a started worker could claim
            batch, attempt = f.claim()
            f.succeed(batch, attempt)

    ran = run_engine(tmp_path, 4, steps(claim_all), options=RunOptions(cancel=cancel))
    assert ran.result.cancelled and ran.result.interrupted
    assert ran.result.tally.settled_batches == 0
    assert ran.fake.spawned == [] and ran.fake.claims == []
    assert ran.journalled() == []
