"""The engine: what attempts' ends mean — accept, retry, fail, stop — whatever runs them.

Backend-neutral policy over the C++ DispatchRegion (the seam that holds the per-attempt
state machine); an executor (executors/base.py: local forks processes, serial runs in
the calling thread) decides only *where* attempts run:

    DispatchRegion --drain_ended() (vectorised)--> accept (CRC check) / _end_attempt
    executor.wait()    --WorkerDied-------------> _settle_held_batches, replace the worker
    executor.expired() --DeadlineExpired--------> take_back (CAS) + kill + _end_attempt
    limits, StopRequests (signals, cancel) -----> stop_reason; journal checkpoints
    _end_attempt, tries spent, isolation on ----> Bisection (runtime/isolation.py): two
        sub-batches queued in the region's extra slots, or an item quarantined

One thread, never blocking on any one worker. Each turn of the loop:
  1. drain the done ring: accept DONE attempts, requeue or fail ERRORED ones;
  2. act on the executor's events: a death costs the attempts it held (known from the
     batch slots), and the slot gets a fresh worker;
  3. ask the executor for expired deadlines: take back those batches (CAS), kill those
     workers;
  4. check the limits of docs/contract.md §4.4 and stop the job as soon as one is exceeded;
  5. checkpoint the journal now and then (spools fsync'd first, then the journal), and
     append the attempts decided since to the timeline `parajob show` reads
     (runtime/timeline.py: from the batch slots already read, nothing new per batch);
  6. wait in the executor (local: select() on the eventfd and every pidfd) after arming
     the region so that the next worker to end an attempt wakes us (or a short nap while
     busy).

The engine imports neither the worker nor any fork code: it is driven in tests by a
scripted fake executor (tests/test_engine.py).

Every path that ends an attempt badly (ERRORED in the done ring, a watchdog take-back, the
reap of a worker that held it, a gathered record lost with its worker, a pop never claimed)
reaches one method, _end_attempt(batch, attempt, ...), which decides once per (batch,
attempt): a later sighting of the same attempt is a no-op, and the C++ seam refuses to
queue an attempt twice in any case. Attempt numbers are dispatch generations (each requeue
takes the next one); the tries a batch has spent are counted apart (``failures``), so a
rerun that was not the batch's fault never costs it a try.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from parajob import _core, terminal
from parajob.data.batch_plan import BatchPlan
from parajob.executors.base import (
    DeadlineExpired,
    Event,
    Executor,
    ExitStatus,
    Interrupted,
    NodeHost,
    SpawnError,
    Worker,
    WorkerDied,
)
from parajob.runtime import shm_view
from parajob.runtime.accounting import Limits, Tally
from parajob.runtime.computes import given_computes
from parajob.runtime.failures import crash_trace, init_traceback, resume_command
from parajob.runtime.isolation import Bisected, Bisection, Quarantined
from parajob.runtime.journal import Accepted, JournalWriter
from parajob.runtime.layout import StepLayout
from parajob.runtime.monitor import Monitor
from parajob.runtime.options import RunOptions, StopRequests, signals_held
from parajob.runtime.progress import Progress
from parajob.runtime.report import AttemptLog, Failure, append_line
from parajob.runtime.shm_view import ERROR_WRONG_TYPE
from parajob.runtime.spool import SpoolReader, spool_path
from parajob.runtime.timeline import StepSettings, TimelineWriter
from parajob.runtime.worker import EXIT_SCRIPT_REJECTED

BatchState = _core.BatchState
WorkerState = _core.WorkerState
DONE, ERRORED = int(BatchState.DONE), int(BatchState.ERRORED)
RUNNING, FINISHING = int(BatchState.RUNNING), int(BatchState.FINISHING)
STARTING_STATES = (int(WorkerState.STARTING), int(WorkerState.INIT))
RUNNING_STATES = (int(WorkerState.RUNNING), int(WorkerState.LOADING))

TICK_S = 0.25  # longest sleep: bounds the watchdog's lateness
BUSY_NAP_S = 0.005  # after a drain that found work, nap instead of arming the eventfd:
# caps wake-ups at ~200/s under load so the driver leaves the
# cores to the workers (measured: waking per mini-batch cost ~40%
# of throughput with 100,000 one-file mini-batches on 2 cores)
LONG_NAP_S = 0.02  # ... while more than four such drains of work remain (see _nap): a
# turn of the loop costs ~0.5 ms of numpy calls whatever it drains (timed: _on_attempts_ended
# ~0.3 ms, _check_limits ~0.15 ms, at 10 ends as at 250), so 4x fewer turns saved ~0.1 s of
# driver CPU per 100,000 one-file mini-batches, which the two workers of a 2-core machine
# get back. Near the end the nap is BUSY_NAP_S again: the last ends are seen as soon.
CHECKPOINT_S = 0.5  # journal cadence: what a driver killed now would have to redo
SHUTDOWN_GRACE_S = 60.0  # how long workers get for shutdown() once the queue is closed
STOP_GRACE_S = 5.0  # SIGTERM -> SIGKILL when the job stops early or is interrupted
SPAWN_RETRIES = 3  # a slot whose fork() was refused is tried again this many times
MAX_FAILURE_RECORDS = 1000  # structured failures kept per step (job_error.txt has them all)


@dataclass
class EngineResult:
    tally: Tally
    stop_reason: str | None  # a limit, or the signal, that stopped the job; else None
    first_failure: str | None  # description + traceback of the first failed batch
    interrupted: bool = False  # stopped by a signal or the caller's cancel: resumable
    cancelled: bool = False  # ... by the caller's cancel (RunOptions.cancel)
    failures: list[Failure] = field(default_factory=list)  # batches failed for good
    hosts: list[NodeHost] = field(default_factory=list)  # where each node ran
    # A first worker that rejected the entry script (runtime/worker.py EXIT_SCRIPT_REJECTED)
    # before anything ran: the step stopped as `parajob run`'s import check would have.
    rejected_by: int | None = None
    quarantined: list[Quarantined] = field(default_factory=list)  # --isolate_failures


class Engine:
    """Runs one step's attempts to the end through an executor. Single-threaded; run()
    once. The region must be fresh (every batch PENDING) and sized for
    instance_count x workers_per_node worker slots."""

    def __init__(
        self,
        executor: Executor,
        region: _core.DispatchRegion,
        plan: BatchPlan,
        layout: StepLayout,
        instance_count: int,
        workers_per_node: int,
        limits: Limits,
        attempt_log: AttemptLog,
        progress: Progress,
        journal: JournalWriter,
        restored: Accepted,
        before_replacement: Callable[[], str | None] | None = None,
        options: RunOptions | None = None,
        monitor: Callable[[], Monitor | None] | None = None,
        isolation: Bisection | None = None,
    ) -> None:
        """isolation: bisect mini-batches whose retries are spent (runtime/isolation.py);
        the region then has its sub-batch slots after the plan's n_batches, and ``plan``
        answers for them (IsolatingPlan).
        monitor: starts the resource monitor (runtime/monitor.py), called once right
        after the first workers are forked (psutil's import and the monitor's files then
        delay no worker); the monitor is ticked from this loop at checkpoint cadence, never
        from a thread (no sampler code runs while a worker is forked).
        before_replacement: asked before a replacement worker is started (after a crash,
        a timeout, recycling, a refused fork); a reason it returns stops the job, so that
        the fresh process, which imports task.code again, never runs edited code."""
        self.executor = executor
        self.region = region
        self.plan = plan
        self.layout = layout
        n_batches = plan.n_batches
        self.n_batches = n_batches
        n_slots = region.n_batches  # the mini-batches, then any sub-batch slots
        self.isolation = isolation
        self.limits = limits
        self.instance_count = instance_count
        self.workers_per_node = workers_per_node
        self.tally = Tally(total_batches=n_batches)
        self.attempt_log = attempt_log
        self.progress = progress
        self.describe_batch = plan.describe
        self.journal = journal
        self.restored = restored
        self.before_replacement = before_replacement
        self.start_monitor = monitor
        self.monitor: Monitor | None = None  # started by run(), closed by the caller
        self.spools = SpoolReader(layout.spool_dir)
        self.records = _core.SpoolChecker()  # CRC check of each record before it is accepted
        self.refused_spawns: dict[int, int] = {}  # slot -> fork() refusals (see _spawn)
        self.slots = shm_view.batch_slots(self.region)
        self.worker_view = shm_view.worker_slots(self.region)  # live; copy what you compare
        # The highest attempt already decided per batch: an attempt's end can be seen more
        # than once (a timeout, then the reap of the killed worker; the done ring and the
        # reap of a worker that died right after finish()).
        self.handled_attempt = np.full(n_slots, -1, dtype=np.int64)
        self.failures = np.zeros(n_slots, dtype=np.int32)  # tries spent (failed attempts)
        self.workers: dict[int, Worker] = {}  # slot -> live worker
        self.by_process: dict[int, Worker] = {}  # process id -> worker, all ever
        self.unjournalled: list[np.ndarray] = []  # accepted batch ids since the checkpoint
        self.first_failure: str | None = None
        self.last_death: str | None = None  # how the last worker died before init() was done
        self.stop_reason: str | None = None
        self.interrupted = False
        self.interrupted_how: str | None = None  # an Interrupted event's, if not a signal
        self.cancelled = False
        self.failed_for_good: list[Failure] = []  # structured, for RunResult / job_result.json
        self.stops = StopRequests(options or RunOptions(), wake=executor.wake)
        self.resume_hint = (options or RunOptions()).resume_hint
        self.given_computes = given_computes(options or RunOptions())  # for the hint
        self.started = time.monotonic()
        self.last_progress = self.started
        self.last_checkpoint = self.started
        self.any_started = False
        self.rejected_by: int | None = None  # see EngineResult.rejected_by
        self.settled_at_start = 0
        self.warned_out_of_slots = False
        # When each attempt ran (for `parajob show`): rows from the slots read here anyway.
        self.timeline = TimelineWriter(layout)

    # ---- the loop -------------------------------------------------------------------

    def run(self) -> EngineResult:
        began = time.time()  # the step's start in settings.json: before any worker
        self._restore_and_queue()
        self.settled_at_start = self.tally.settled_batches  # what a resume found settled
        self.stops.__enter__()
        try:
            self.executor.start()  # process hygiene: before any worker (it forks the janitor)
            # A stop requested before the start (a cancel event already set) starts no
            # worker: _spawn does nothing once there is a stop reason, so no mini-batch runs.
            self._check_limits()
            for node in range(self.instance_count):
                for rank in range(self.workers_per_node):
                    self._spawn(node * self.workers_per_node + rank, node, rank)
            # After the first forks, before the loop's first decision: neither the settings
            # file's fsyncs nor psutil's import delays a worker's start.
            self._start_timeline(began)
            if self.start_monitor is not None:
                self.monitor = self.start_monitor()
            while True:
                # Limits are checked after every drain, the last one included: the drain
                # that settles the final mini-batch may also be the one that exceeds a limit.
                drained = self._drain()
                self._watchdog()
                self._check_limits()
                if self.tally.finished or self.stop_reason is not None:
                    break
                if time.monotonic() - self.last_checkpoint >= CHECKPOINT_S:
                    self._checkpoint()
                    self._tend_processes()
                    if self.monitor is not None:
                        self.monitor.tick(self.workers.values())
                self.progress.update(self.tally, self._running)
                self._sleep(busy=drained > 0, nap=self._nap(drained))
        finally:
            self._stop_workers(abort=self.stop_reason is not None or not self.tally.finished)
            self.executor.stop()  # process hygiene: nothing the workers started outlives them
            self._checkpoint()
            self.timeline.close()
            self.records.close()
            self.stops.__exit__(None, None, None)
            self.progress.update(self.tally, lambda: 0, force=True)
            self.spools.close()
            self.executor.close()  # last: a signal handler's wake() may use it until here
        return EngineResult(
            self.tally,
            self.stop_reason,
            self.first_failure,
            self.interrupted,
            self.cancelled,
            self.failed_for_good,
            [self.executor.node_host(n) for n in range(self.instance_count)],
            self.rejected_by,
            self.isolation.quarantined if self.isolation is not None else [],
        )

    def _restore_and_queue(self) -> None:
        """Journalled batches (resume) become DONE; every other batch is queued."""
        r = self.restored
        for i in range(len(r)):
            self.region.restore_done(
                int(r.batch[i]),
                int(r.attempt[i]),
                int(r.process[i]),
                int(r.items_in[i]),
                int(r.items_out[i]),
                int(r.offset[i]),
                int(r.length[i]),
            )
        if len(r):
            batches = r.batch.astype(np.int64)
            self.handled_attempt[batches] = r.attempt.astype(np.int64)
            whole = batches < self.n_batches
            self.tally.accept_many(
                batches[whole], r.items_in[whole], r.items_out[whole], self.limits
            )
        if not len(r):  # a fresh run: one C++ call queues them all
            self.region.enqueue_range(0, self.tally.total_batches)
            return
        todo = np.ones(self.tally.total_batches, dtype=bool)
        todo[r.roots()] = False  # one with journalled pieces is not run whole again
        pieces = r.pieces()
        if len(pieces):  # job.py keeps pieces only with isolation on
            sub = r.batch.astype(np.int64) >= self.n_batches
            if self.isolation is None or int(sub.sum()) != len(pieces):
                raise RuntimeError(  # job.py's _kept and _isolation make it so
                    "internal error: the journalled sub-batches do not fit this plan"
                )
            queue, settled = self.isolation.restore(
                pieces, r.items_in[sub].astype(np.int64), r.items_out[sub].astype(np.int64)
            )
            for done in settled:
                self._settle(done)
            for piece in queue:
                self._queue_piece(piece)
        for batch in todo.nonzero()[0].tolist():
            self.region.enqueue(batch, 0)  # PENDING -> QUEUED(0): cannot be refused

    def _start_timeline(self, began: float) -> None:
        try:
            self.timeline.start(
                StepSettings(
                    self.layout.root.name,
                    self.tally.total_batches,
                    self.plan.n_items,
                    self.instance_count,
                    self.workers_per_node,
                    self.limits,
                    began,
                    os.getpid(),
                )
            )
        except OSError:
            pass  # a report only; a disk too full for it fails the journal soon enough

    def _nap(self, drained: int) -> float:
        """How long to nap after a drain that found ``drained`` ends (see LONG_NAP_S): long
        while more than four such drains of work remain."""
        remaining = self.tally.total_batches - self.tally.settled_batches
        return LONG_NAP_S if remaining > 4 * drained else BUSY_NAP_S

    def _sleep(self, busy: bool, nap: float = BUSY_NAP_S) -> None:
        if busy:
            timeout = nap  # pidfds still wake us at once; the done ring can wait
        else:
            self.region.arm_driver_sleep()
            if self._drain():  # an attempt ended between the last drain and arming
                self.region.disarm_driver_sleep()
                return
            timeout = TICK_S
        for event in self.executor.wait(timeout):
            self._on_event(event)
        self.region.disarm_driver_sleep()

    def _on_event(self, event: Event) -> None:
        if isinstance(event, WorkerDied):
            self._on_exit(event)
        elif isinstance(event, DeadlineExpired):
            self._on_expired(event)
        elif isinstance(event, Interrupted) and self.stops.signalled is None:
            self.stops.signalled = event.signum  # stop as a signal would: resumable
            self.interrupted_how = event.how

    def _worker_states(self) -> np.ndarray:
        """A snapshot of every worker slot's state. Never a live view: workers change the
        states while numpy reads them (np.isin, used here before, sized a lookup table from
        a min/max it read first: a live view raised IndexError when a state changed in
        between), and two comparisons must see the same states."""
        return self.worker_view["state"].copy()

    def _running(self) -> int:
        return _count_in(self._worker_states(), RUNNING_STATES)

    def _check_limits(self) -> None:
        if self.stop_reason is not None:
            return
        stop = self.stops.requested()  # a signal or the caller's cancel: resumable
        if stop is not None and self.interrupted_how is not None:
            stop = f"stopped by {self.interrupted_how}"
        if stop is not None:
            hint = (
                self.resume_hint
                if self.resume_hint is not None
                else resume_command(self.layout.root.parent, self.given_computes)
            )
            self.stop_reason = f"{stop}; resume with: {hint}" if hint else stop
            self.interrupted, self.cancelled = True, self.stops.cancelled
            return
        now = time.monotonic()
        workers = self.worker_view
        if _count_in(self._worker_states(), STARTING_STATES):
            # init() has its own limit (first_task_creation_timeout); no progress is due from
            # a worker inside it, so its time never counts against progress_update_timeout.
            self.last_progress = now
        if not self.any_started:
            self.any_started = int(workers["batches_done"].sum()) > 0 or self._running() > 0
        if not self.any_started and now - self.started > self.limits.first_task_creation_timeout_s:
            self.stop_reason = (
                f"no mini-batch started within first_task_creation_timeout "
                f"({self.limits.first_task_creation_timeout_s:g} s); "
                f"see logs/user/"
            )
        elif now - self.last_progress > self.limits.progress_update_timeout_s:
            self.stop_reason = (
                f"no progress within progress_update_timeout "
                f"({self.limits.progress_update_timeout_s:g} s)"
            )
        else:
            self.stop_reason = self.tally.exceeded(self.limits, True, self.workers_per_node)

    def _checkpoint(self) -> None:
        self.last_checkpoint = time.monotonic()
        if self.unjournalled:
            self._checkpoint_accepted()
        self.timeline.flush()

    def _checkpoint_accepted(self) -> None:
        batches = np.concatenate(self.unjournalled)
        self.unjournalled = []
        rows = shm_view.gather(self.slots, batches)  # accepted: final, never written again
        _, attempt, process = shm_view.unpack_states(rows["word"])
        self._log_accepted(batches, attempt, process, rows)
        pieces = (
            self.isolation.table.places(batches)
            if self.isolation is not None and int(batches.max()) >= self.n_batches
            else None
        )
        try:
            self.journal.checkpoint(
                batches,
                attempt,
                process,
                rows["spool_offset"],
                rows["spool_length"],
                rows["items_in"],
                rows["items_out"],
                pieces,
            )
        except OSError as exc:  # a full disk, most likely: nothing accepted from now on is safe
            if self.stop_reason is None:
                self.stop_reason = (
                    f"the journal could not be written "
                    f"({exc.strerror or exc}): free some space, then "
                    f"`parajob run --resume {self.layout.root.parent}` "
                    "runs again what it could not record"
                )

    def _log_accepted(
        self, batches: np.ndarray, attempt: np.ndarray, process: np.ndarray, rows: np.ndarray
    ) -> None:
        """The columns of processed_mini-batches.csv that the workers' rows lack (when and
        where each accepted attempt ran), and the same times for the attempts timeline:
        from the slots the checkpoint reads anyway, and per process, not per batch, for its
        pid and host. In memory until the log closes or the timeline flushes."""
        start, end = self.executor.attempt_times(batches, attempt, rows["start_ns"], rows["end_ns"])
        for p in shm_view.distinct_processes(process):
            worker = self.by_process.get(p)
            if worker is not None:
                self.attempt_log.worker(
                    worker.process,
                    worker.pid,
                    worker.node,
                    self.executor.node_host(worker.node).host,
                )
        self.attempt_log.accepted(batches, attempt, process, start, end)
        self.timeline.accepted(batches, attempt, process, rows, start, end)

    # ---- attempts -------------------------------------------------------------------

    def _drain(self) -> int:
        """Handle every attempt that ended since the last drain; returns how many."""
        ended = self.region.drain_ended()
        if len(ended):
            self._on_attempts_ended(ended)
        return len(ended)

    def _on_attempts_ended(self, batches: np.ndarray) -> None:
        # Vectorised: with one-file mini-batches the driver sees thousands of ends per
        # second, and one Python call per batch cost it ~15 us each (1.5 s per 100,000).
        self.last_progress = time.monotonic()
        # A copy; the ring's acquire made these fields visible.
        rows = shm_view.gather(self.slots, batches)
        state, attempt, process = shm_view.unpack_states(rows["word"])
        fresh = attempt.astype(np.int64) > self.handled_attempt[batches]
        done = fresh & (state == DONE)
        if done.any():
            done &= self._records_intact(batches, attempt, process, rows, done)
            self._accept(batches[done], attempt[done], rows[done], process[done])
        for i in (fresh & (state == ERRORED)).nonzero()[0].tolist():
            self._on_errored(int(batches[i]), int(attempt[i]), int(process[i]), rows[i])

    def _accept(
        self, batches: np.ndarray, attempt: np.ndarray, rows: np.ndarray, process: np.ndarray
    ) -> None:
        # Their rows in processed_mini-batches.csv are written by the workers.
        self.handled_attempt[batches] = attempt
        self.unjournalled.append(batches.astype(np.int64))
        if self.isolation is not None and len(batches) and int(batches.max()) >= self.n_batches:
            sub = batches >= self.n_batches
            settled = self.isolation.accepted(
                batches[sub].tolist(),
                rows["items_in"][sub].tolist(),
                rows["items_out"][sub].tolist(),
            )
            for done in settled:
                self._settle(done)
            batches, rows = batches[~sub], rows[~sub]
        items_in, items_out = rows["items_in"], rows["items_out"]
        self.tally.accept_many(batches, items_in, items_out, self.limits)
        if self.first_failure is None and self.limits.error_threshold != -1:
            short = (items_out < items_in).nonzero()[0]
            if len(short):
                i = short[0]
                self.first_failure = (
                    f"{self.describe_batch(int(batches[i]))}\nrun() returned "
                    f"{int(items_out[i])} items for {int(items_in[i])} inputs\n"
                )

    def _records_intact(
        self,
        batches: np.ndarray,
        attempt: np.ndarray,
        process: np.ndarray,
        rows: np.ndarray,
        done: np.ndarray,
    ) -> np.ndarray:
        """Which DONE attempts' spool records validate (CRC32, runtime/fd_guard.py). A record
        that does not is discarded: the attempt fails (the batch runs again while tries
        remain) and its worker, whose spool can no longer be trusted, is replaced."""
        intact = np.ones(len(batches), dtype=bool)
        intact[done] = self.records.check(
            batches[done], process[done], rows["spool_offset"][done], rows["spool_length"][done]
        )
        for i in (~intact).nonzero()[0].tolist():
            worker = self.by_process[int(process[i])]
            spool = spool_path(self.layout.spool_dir, worker.process)
            why = (
                f"the result record of this attempt in {spool} did not validate (CRC32): "
                "user code wrote to or replaced the worker's file descriptors; the worker "
                "was replaced"
            )
            if worker.slot in self.workers and self.workers[worker.slot] is worker:
                self.executor.kill(worker, why)
            seconds = (int(rows["end_ns"][i]) - int(rows["start_ns"][i])) / 1e9
            # DONE -> CRASHED first: only an ended attempt may be queued again.
            if self.region.reject_done(int(batches[i]), int(attempt[i]), worker.process):
                self._end_attempt(
                    int(batches[i]),
                    int(attempt[i]),
                    worker,
                    "corrupt_record",
                    why + "\n",
                    seconds,
                    int(rows["items_in"][i]),
                    ended_ns=int(rows["end_ns"][i]),
                )
        return intact

    def _on_errored(self, batch: int, attempt: int, process: int, row: np.void) -> None:
        payload = self.spools.payload(
            process, int(row["spool_offset"]), int(row["spool_length"]), batch
        )
        error = (
            payload.decode("utf-8", "replace")
            if payload is not None
            else "(its error record did not validate: user code wrote to or replaced the "
            "worker's file descriptors)\n"
        )
        status = "wrong_return_type" if int(row["error_code"]) == ERROR_WRONG_TYPE else "raised"
        seconds = (int(row["end_ns"]) - int(row["start_ns"])) / 1e9
        self._end_attempt(
            batch,
            attempt,
            self.by_process[process],
            status,
            error,
            seconds,
            int(row["items_in"]),
            ended_ns=int(row["end_ns"]),
        )

    def _end_attempt(
        self,
        batch: int,
        attempt: int,
        worker: Worker,
        status: str,
        error: str,
        seconds: float,
        items_in: int | None = None,
        *,
        charged: bool = True,
        ended_ns: int | None = None,
    ) -> None:
        """The one decision per (batch, attempt) that ended without being accepted: queue
        the next attempt while tries remain, else fail the batch for good. ``charged=False``
        is a rerun that costs no try (the attempt's result was lost with its worker, or it
        never started). The batch's slot is in an ended state (ERRORED, TIMED_OUT, CRASHED).
        ``ended_ns``: its end's monotonic stamp when the slot has one; else now (a timeout,
        a death: when the driver ended it)."""
        if attempt <= self.handled_attempt[batch]:
            return  # already decided: e.g. timed out, then its killed worker was reaped
        self.handled_attempt[batch] = attempt
        if not charged:
            self._queue_next(batch, attempt)
            return
        self.failures[batch] += 1
        self.tally.failed_attempts += 1
        n_items = items_in if items_in else self.plan.items_in(batch)
        end = _core.monotonic_ns() if ended_ns is None else ended_ns
        start_ns, end_ns = self.executor.attempt_times(
            np.array([batch]),
            np.array([attempt]),
            np.array([end - int(seconds * 1e9)]),
            np.array([end]),
        )
        if status == "crashed":  # the Python stack faulthandler wrote to its stderr log
            error += crash_trace(
                self.layout.user_log("stderr", worker.node_name, worker.name), error
            )
        self.progress.note_failure(error or status)
        self.timeline.failed(
            batch, attempt, worker.process, status, n_items, int(start_ns[0]), int(end_ns[0])
        )
        self.attempt_log.attempt(
            batch,
            attempt,
            worker.node_name,
            worker.name,
            n_items,
            0,
            seconds,
            status,
            error,
            when=(int(start_ns[0]), int(end_ns[0])),
            pid=worker.pid,
            node_index=worker.node,
            host=self.executor.node_host(worker.node).host,
            label=self.isolation.plan.label(batch) if self.isolation is not None else None,
        )
        # A sub-batch gets one try: its mini-batch already failed max_retries + 1 times.
        if self.failures[batch] <= (self.limits.max_retries if batch < self.n_batches else 0):
            self._queue_next(batch, attempt)
            return
        # FAILED for good, or split or quarantined (isolation): never queued nor merged.
        if not self.region.mark_failed(batch):
            raise RuntimeError(
                f"internal error: mini-batch {batch} cannot be failed from state "
                f"{self.region.batch_state(batch)}"
            )
        if self.isolation is not None and self._isolate(batch, worker, status, error):
            return
        self.tally.fail_for_good(batch, n_items)
        tries = int(self.failures[batch])
        self._record_failure(
            batch, tries, status, error, f"failed {tries} times; last attempt {status}:\n{error}"
        )

    def _record_failure(
        self, batch: int, attempts: int, status: str, error: str, summary: str
    ) -> None:
        """A mini-batch that failed for good (or ended with quarantined items): its
        structured record, and the step's first failure (its inputs, then ``summary``)."""
        if len(self.failed_for_good) < MAX_FAILURE_RECORDS:
            self.failed_for_good.append(
                Failure.of(batch, self.describe_batch(batch), attempts, status, error)
            )
        if self.first_failure is None:
            self.first_failure = f"{self.describe_batch(batch)}\n{summary}"

    # ---- isolation (runtime/isolation.py) ------------------------------------------------

    def _isolate(self, batch: int, worker: Worker, status: str, error: str) -> bool:
        """A batch whose tries are spent, isolation on: split it, quarantine it, or (False)
        fail it as without isolation."""
        assert self.isolation is not None
        # A traceback is in the error log; a crash's (faulthandler) or a killed worker's
        # last words are in its stderr log, the only one a killed worker surely has.
        kind = "error" if status in ("raised", "wrong_return_type") else "stderr"
        log = self.layout.user_log(kind, worker.node_name, worker.name)
        decision = self.isolation.failed(batch, status, error, str(log))
        if self.isolation.out_of_slots and not self.warned_out_of_slots:
            self.warned_out_of_slots = True
            terminal.echo(
                f"parajob: warning: step {self.layout.root.name}: all "
                f"{self.isolation.table.capacity} sub-batches of --isolate_failures are "
                "used; failing mini-batches that need more fail as a whole",
                err=True,
            )
        if decision is None:
            return False
        for child in decision.children:
            self._queue_piece(child)
        if decision.settled is not None:
            self._settle(decision.settled)
        return True

    def _queue_piece(self, piece: int) -> None:
        if not self.region.enqueue(piece, 0):
            raise RuntimeError(
                f"internal error: sub-batch {piece} was refused by the dispatch queue (state "
                f"{self.region.batch_state(piece)})"
            )

    def _settle(self, done: Bisected) -> None:
        """A bisected mini-batch with no piece left running: count it. Abandoned, it fails
        as without isolation: its accepted pieces leave the merge (DONE -> CRASHED) and the
        journal forgets them (after their own records, so that a resume runs it whole)."""
        root, n_quarantined = done.batch, len(done.quarantined)
        if done.abandoned is not None:
            if self.unjournalled:
                self._checkpoint_accepted()
            for piece in done.accepted:
                _, attempt, process = self.region.batch_state(piece)
                self.region.reject_done(piece, attempt, process)
            try:
                self.journal.abandoned(root)
            except OSError:
                pass  # the next checkpoint's failure says it; a resume then keeps the pieces
        self.tally.settle_isolated(
            root,
            done.size,
            done.items_in,
            done.items_out,
            n_quarantined,
            done.abandoned is not None,
            self.limits,
        )
        if done.abandoned is None and not n_quarantined:
            return  # every piece succeeded: a completed mini-batch
        if done.abandoned is not None:
            status, error = done.status, f"{done.abandoned}\n{done.error}"
        else:
            first = done.quarantined[0]
            status = "quarantined"
            error = (
                f"{n_quarantined} item(s) quarantined (logs/quarantine.csv); the first, "
                f"{first.item}, {first.status}:\n{first.error}"
            )
        self._record_failure(root, int(self.failures[root]) + done.attempts, status, error, error)

    def _queue_next(self, batch: int, attempt: int) -> None:
        if not self.region.enqueue(batch, attempt + 1):
            # The C++ seam refuses a second enqueue of an attempt; reaching it means two
            # paths decided the same attempt, which _end_attempt exists to prevent.
            raise RuntimeError(
                f"internal error: mini-batch {batch} attempt {attempt + 2} was "
                f"refused by the dispatch queue (state "
                f"{self.region.batch_state(batch)})"
            )

    # ---- workers --------------------------------------------------------------------

    def _spawn(self, slot: int, node: int, rank: int) -> None:
        if self.stop_reason is not None:
            return
        with signals_held():  # a worker is started and recorded, or not started at all
            try:
                worker = self.executor.spawn(slot, node, rank)
            except SpawnError as exc:
                self._spawn_refused(slot, str(exc))
                return
            self.refused_spawns.pop(slot, None)
            self.workers[slot] = worker
            self.by_process[worker.process] = worker
            self.timeline.worker(worker.process, worker.node_name, worker.name, slot)
            self.records.add_spool(
                worker.process, str(spool_path(self.layout.spool_dir, worker.process))
            )

    # ---- process hygiene (fork refused, orphans) ---------------------------------------

    def _spawn_refused(self, slot: int, why: str) -> None:
        """fork() refused (EAGAIN, ENOMEM): with no worker left the job stops with that
        reason; otherwise it goes on with fewer and the slot is tried again a few times
        (_tend_processes). Policy, so here rather than in an executor: any executor that
        can be refused a worker gets the same answer."""
        if not self.workers:
            self.stop_reason = why
            return
        refusals = self.refused_spawns.get(slot, 0) + 1
        self.refused_spawns[slot] = refusals
        if refusals == 1:
            terminal.echo(
                f"parajob: warning: {why}; going on with {len(self.workers)} worker process(es)",
                err=True,
            )

    def _tend_processes(self) -> None:
        """At checkpoint cadence: the executor's housekeeping, retry refused spawns."""
        self.executor.tend()
        for slot, refusals in list(self.refused_spawns.items()):
            if slot in self.workers or refusals > SPAWN_RETRIES:
                continue
            node, rank = divmod(slot, self.workers_per_node)
            self._replace(slot, node, rank)

    def _forget(self, worker: Worker) -> None:
        if self.workers.get(worker.slot) is worker:
            del self.workers[worker.slot]

    def _on_exit(self, event: WorkerDied) -> None:
        worker, status, state = event.worker, event.status, event.state
        self._forget(worker)
        self.last_progress = time.monotonic()
        self._settle_held_batches(worker, status)
        if status.code == 0 and state == int(WorkerState.EXITED):
            return  # a normal exit after the queue closed
        if self._rejects_script(worker, status, state):
            self.rejected_by = worker.process
            self.stop_reason = self.stop_reason or "the entry script was rejected"
            return  # no replacement: it would fail the same way
        # What the process was doing when it ended says what failed; its exit code does not
        # (run() may os._exit(3) as well as init() failing).
        died_in = None
        if state in (int(WorkerState.INIT), int(WorkerState.INIT_FAILED)):
            self.tally.init_failures += 1
            died_in = "while importing the entry script or in init()"
        elif state == int(WorkerState.STARTING):
            self.tally.start_failures += 1
            died_in = "while starting, before init()"
        if died_in is not None and state != int(WorkerState.INIT_FAILED):
            # It died without a Python traceback (os._exit, a signal): say how, where the
            # user looks first (init() raising writes its own traceback there).
            self.last_death = (
                f"process {worker.process} ({worker.node_name}/{worker.name}) "
                f"died {died_in}: {worker.killed_because or status.describe()}"
            )
            self._note_in_error_log(worker, self.last_death)
        if died_in is not None:
            self._note_init_failure(worker, state, status)
        if not self.tally.finished and self.stop_reason is None:
            self.stop_reason = self.tally.exceeded(self.limits, True, self.workers_per_node)
            if self.stop_reason is not None and self.last_death is not None:
                self.stop_reason += f"; the last: {self.last_death}"
            if self.stop_reason is None:  # replaced or recycled: a fresh process, init() again
                self._replace(worker.slot, worker.node, worker.local_rank)

    def _rejects_script(self, worker: Worker, status: ExitStatus, state: int) -> bool:
        """Whether this exit is the import check failing: a worker of the first set
        (no replacement started yet) could not import or bind the entry script, left its
        record, and no attempt has ended in this run. Later, the same exit is an ordinary
        init failure (counted, replaced): the job is under way, and its results stand."""
        return (
            status.code == EXIT_SCRIPT_REJECTED
            and state == int(WorkerState.INIT_FAILED)
            and self.rejected_by is None
            and len(self.by_process) <= self.instance_count * self.workers_per_node
            and self.tally.settled_batches == self.settled_at_start
            and self.tally.failed_attempts == 0
            and self.layout.script_check(worker.process).is_file()
        )

    def _replace(self, slot: int, node: int, rank: int) -> None:
        """_spawn for a slot whose first process is gone or was refused, after the
        before_replacement check."""
        if self.before_replacement is not None and self.stop_reason is None:
            self.stop_reason = self.before_replacement()
        self._spawn(slot, node, rank)

    def _note_init_failure(self, worker: Worker, state: int, status: ExitStatus) -> None:
        """A worker that never got past init(): its traceback (or how it died, with the
        faulthandler trace of a crash) into job_error.txt, and the step's first failure
        when no mini-batch has failed before it (job_result.txt, the terminal)."""
        where = f"process {worker.process} ({worker.node_name}/{worker.name})"
        if state == int(WorkerState.INIT_FAILED):
            text = (
                init_traceback(
                    self.layout.user_log("error", worker.node_name, worker.name), worker.process
                )
                or "(no traceback in its error log)\n"
            )
            head = f"init() failed in {where}:"
        else:
            why = worker.killed_because or status.describe()
            text = f"{why}\n" + crash_trace(
                self.layout.user_log("stderr", worker.node_name, worker.name), why
            )
            head = f"{where} died before init() was done:"
        self.attempt_log.worker_failed(head, text)
        self.progress.note_failure(text)
        if self.first_failure is None:
            self.first_failure = f"{head}\n{text}"

    def _note_in_error_log(self, worker: Worker, text: str) -> None:
        try:
            append_line(self.layout.user_log("error", worker.node_name, worker.name), text)
        except OSError:
            pass  # the job's own reason says it too

    def _settle_held_batches(self, worker: Worker, status: ExitStatus) -> None:
        """A dead (reaped) worker costs the attempt it was running; attempts whose results
        it had gathered but not yet published (_core.ResultWriter), or that it popped but
        never claimed, run again for free."""
        # Attempts it ended and pushed to the done ring are decided there first, so that
        # the ring never holds a batch twice (a requeued batch can end again).
        self._drain()
        unclaimed = self.region.reclaim_unclaimed(worker.slot, worker.process)
        if unclaimed >= 0:
            self._end_attempt(
                unclaimed,
                self.region.batch_state(unclaimed)[1],
                worker,
                "crashed",
                "",
                0.0,
                charged=False,
            )
        state, attempt, process = shm_view.unpack_states(self.slots["word"])
        mine = process == worker.process
        # Only the attempts not decided yet: after a normal exit every batch the worker
        # ran is DONE and was decided from the done ring; handing them all over again
        # cost ~0.1 s of serial end-of-job per 50,000 (py-spy, one-file mini-batches).
        undecided = attempt.astype(np.int64) > self.handled_attempt
        ended = (mine & undecided & ((state == DONE) | (state == ERRORED))).nonzero()[0]
        if len(ended):
            # Ended just before dying, before reaching the done ring: handle them now.
            self._on_attempts_ended(ended.astype(np.uint32))
        held = self.region.worker_info(worker.slot)[3]  # the batch in its run(), if any
        running = mine & ((state == RUNNING) | (state == FINISHING))
        why = worker.killed_because or f"worker {status.describe()}"
        now = _core.monotonic_ns()
        for batch in running.nonzero()[0].tolist():
            k = int(attempt[batch])
            if not self.region.take_back(batch, k, worker.process, BatchState.CRASHED):
                continue
            seconds = (now - int(self.slots["start_ns"][batch])) / 1e9
            # Not the one in run(): its run() had returned and its record was gathered but
            # not yet written (_core.ResultWriter). Not its fault: no try spent.
            self._end_attempt(
                batch, k, worker, "crashed", why + "\n", seconds, charged=batch == held
            )

    def _watchdog(self) -> None:
        for event in self.executor.expired(self.limits):
            self._on_expired(event)

    def _on_expired(self, event: DeadlineExpired) -> None:
        """A deadline passed: init() costs the worker; run() or loading also costs the
        attempt, unless the worker finished it just in time (the take_back CAS loses)."""
        lim, worker = self.limits, event.worker
        if self.workers.get(worker.slot) is not worker or worker.killed_because:
            return
        if event.kind == "init":
            self.executor.kill(worker, f"init() exceeded {lim.init_timeout_s:g} s")
            return
        if not self.region.take_back(
            event.batch, event.attempt, worker.process, BatchState.TIMED_OUT
        ):
            return  # it finished just in time
        what = (
            "run() exceeded retry_settings.timeout"
            if event.kind == "run"
            else "loading the mini-batch exceeded --task_overhead_timeout"
        )
        limit = lim.run_timeout_s if event.kind == "run" else lim.load_timeout_s
        why = f"{what} of {limit:g} s; the worker was killed and replaced"
        self.executor.kill(worker, why)
        self._end_attempt(
            event.batch, event.attempt, worker, "timed_out", why + "\n", event.elapsed_s
        )

    def _stop_workers(self, abort: bool) -> None:
        """Close the queue and wait for every worker. On abort: SIGTERM now, SIGKILL after
        STOP_GRACE_S; otherwise workers get SHUTDOWN_GRACE_S for shutdown()."""
        self.region.close()
        if abort:
            for worker in list(self.workers.values()):
                self.executor.terminate(worker)
        deadline = time.monotonic() + (STOP_GRACE_S if abort else SHUTDOWN_GRACE_S)
        while self.workers:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                for worker in list(self.workers.values()):
                    self.executor.kill(worker, "did not exit in time after the job stopped")
                deadline = time.monotonic() + STOP_GRACE_S
                continue
            for event in self.executor.wait(min(remaining, TICK_S)):
                if isinstance(event, WorkerDied):
                    self._forget(event.worker)
                    if not abort:
                        self._settle_held_batches(event.worker, event.status)
            self._drain()


def _count_in(states: np.ndarray, values: tuple[int, ...]) -> int:
    """How many of ``states`` are one of ``values``: a comparison per value (np.isin cost
    ~0.1 ms a call on two workers' states, twice per turn of the loop)."""
    return sum(int((states == v).sum()) for v in values)
