"""parajob.map_batches: a plain Python callable over many items, as a parallel job.

    map_batches(fn, items_or_folder, ...)          (the caller's thread)
        |  check the arguments (MapArgumentError: names the parameter)
        |  plan: a folder/file -> FileBatchPlan (absolute paths); any other iterable ->
        |        ItemBatchPlan (the caller's objects, inherited by fork, never pickled)
        v
    runtime.map_step.planned_step -> runtime.job.run_planned  (the same driver, retries,
        |  timeouts, thresholds, journal and logs as a YAML step; in a background thread
        |  with stream=True)
        v
    results.pkl (merge, mini-batch order) -> MapResult(results, run)     stream=False
    journal checkpoints -> spool records   -> MapStream yields in order  stream=True

A job that does not succeed raises MapFailed (MapCancelled when cancelled), which carries
the RunResult. The run folder is a temporary one unless ``run_dir`` is given; it is removed
at the end unless the job failed (its logs are kept for reading, the error names it).
Workers are forked from the caller: fn may be a lambda, a closure or a bound method; its
results must be picklable (they travel back through the spool files).
"""

from __future__ import annotations

import os
import queue
import shutil
import tempfile
import threading
import time
from collections.abc import Callable, Generator, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, overload

from parajob.data.batch_plan import BatchPlan
from parajob.data.files import InputDataError, plan_file_batches
from parajob.data.items import ItemBatchPlan
from parajob.errors import Diagnostic, JobFailed, SpecError
from parajob.results import Failure, RunResult
from parajob.runtime.accounting import Limits
from parajob.runtime.job import PlannedStep, default_concurrency, run_planned
from parajob.runtime.layout import StepLayout
from parajob.runtime.map_step import (
    STEP_NAME,
    ChunkReader,
    Feed,
    ResumeRefused,
    bound_script,
    planned_step,
    read_chunks,
    restored_batches,
)
from parajob.runtime.options import ProgressEvent, RunOptions
from parajob.runtime.report import Outcome
from parajob.runtime.run_folder import RunFolder

__all__ = ["MapArgumentError", "MapCancelled", "MapFailed", "MapResult", "MapStream",
           "map_batches"]

MAX_TIMEOUT_S = 259200  # retry_settings.timeout's upper bound (SPEC §2)
POLL_S = 0.25           # a streaming reader's longest wait before it looks at the run again


class MapArgumentError(SpecError, ValueError):
    """A map_batches argument is wrong; the message names the parameter and the fix."""


class MapFailed(JobFailed):
    """The job ran and did not succeed: a limit was exceeded (a mini-batch failed for good
    with mini_batch_error_threshold=0, the default). ``run`` is its RunResult."""

    def __init__(self, message: str, run: RunResult) -> None:
        super().__init__(message)
        self.run = run


class MapCancelled(MapFailed):
    """The run was cancelled (``cancel`` set, or a stream closed early)."""


@dataclass(frozen=True)
class MapResult:
    """fn's results in item order, and how the run went. With failures allowed
    (mini_batch_error_threshold above 0 or -1), each item of a mini-batch that failed
    for good holds that mini-batch's :class:`parajob.results.Failure` instead."""

    results: list[Any]
    run: RunResult

    @property
    def failures(self) -> tuple[Failure, ...]:
        return self.run.steps[0].failures if self.run.steps else ()


def _argument_error(parameter: str, message: str, hint: str | None = None) -> MapArgumentError:
    return MapArgumentError([Diagnostic("map_batches", None, None, parameter, message, hint)])


def _check_int(name: str, value: object, low: int, hint: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise _argument_error(name, f"must be an integer >= {low}, not {value!r}", hint)
    return value


def _limits(timeout: float, max_retries: int, error_threshold: int,
            mini_batch_error_threshold: int) -> Limits:
    if (isinstance(timeout, bool) or not isinstance(timeout, (int, float))
            or not 0 < timeout <= MAX_TIMEOUT_S):
        raise _argument_error("timeout", f"must be seconds in (0, {MAX_TIMEOUT_S}], not "
                              f"{timeout!r}", "the longest one fn(mini_batch) call may take")
    load = Limits().load_timeout_s
    return Limits(
        max_retries=_check_int("max_retries", max_retries, 0, "retries after the first try"),
        run_timeout_s=float(timeout), progress_update_timeout_s=3 * (float(timeout) + load),
        error_threshold=_check_int("error_threshold", error_threshold, -1,
                                   "failed items allowed; -1 ignores them"),
        mini_batch_error_threshold=_check_int(
            "mini_batch_error_threshold", mini_batch_error_threshold, -1,
            "failed mini-batches allowed; -1 ignores them"))


def _plan(items: object, size: int) -> BatchPlan:
    """A folder or file (str / PathLike): its files; any other iterable: its items."""
    if isinstance(items, (str, os.PathLike)):
        path = Path(os.fspath(items))
        if not path.exists():
            raise _argument_error("items_or_folder", f"no such folder or file: {path}",
                                  "pass a folder of input files, or a list of items")
        try:
            return plan_file_batches(path, "uri_file" if path.is_file() else "uri_folder", size)
        except InputDataError as exc:
            raise _argument_error("items_or_folder", str(exc)) from None
    if isinstance(items, (bytes, bytearray)):
        raise _argument_error("items_or_folder", "got bytes",
                              "pass a list of items, or a folder as str / pathlib.Path")
    if isinstance(items, Sequence):
        return ItemBatchPlan(items, size)
    if isinstance(items, Iterable):  # a generator, a set: taken once, in its order
        return ItemBatchPlan(list(items), size)
    raise _argument_error("items_or_folder", f"expected a folder or an iterable of items, "
                          f"not {type(items).__name__}")


def _open_run(run_dir: str | os.PathLike[str] | None, resume: bool, plan: BatchPlan,
              cancel: threading.Event | None) -> _Run:
    """The run's folder: a temporary one of ours, or the given one, held (RunFolder's lock)
    until the run's cleanup; a given one must be new, or, with resume, hold a run."""
    if run_dir is None:
        if resume:
            raise _argument_error("resume", "resume=True needs run_dir=, the folder of the "
                                  "run to finish")
        path = Path(tempfile.mkdtemp(prefix="parajob-map-"))
        return _Run(plan, StepLayout(path / STEP_NAME), True, _Stop(cancel), None)
    path = Path(os.fspath(run_dir))
    if resume and isinstance(plan, ItemBatchPlan):
        raise _argument_error("resume", "a run over in-memory items cannot be resumed (they "
                              "are not kept anywhere)", "run it again; a folder input resumes")
    folder = RunFolder.acquire(path)  # RunFolderInUse: another run holds it
    step = path / STEP_NAME
    if resume and not step.is_dir():
        folder.discard_if_unused()
        raise _argument_error("resume", f"{path} holds no map_batches run ({step} is missing)",
                              "give the run_dir of the run to finish")
    if not resume and step.exists() and any(step.iterdir()):
        folder.release()
        raise _argument_error("run_dir", f"{path} already holds a map_batches run ({step})",
                              "pass resume=True to finish it (a folder input), or choose a "
                              "new run_dir")
    return _Run(plan, StepLayout(step), False, _Stop(cancel), folder)


@overload
def map_batches(fn: Callable[[list[Any]], Sequence[Any]], items_or_folder: Any, *,
                mini_batch_size: int = ..., workers: int | None = ..., timeout: float = ...,
                max_retries: int = ..., init: Callable[[], Any] | None = ...,
                shutdown: Callable[[], Any] | None = ..., error_threshold: int = ...,
                mini_batch_error_threshold: int = ..., run_dir: str | os.PathLike[str] | None = ...,
                serial: bool = ..., stream: Literal[False] = ...,
                on_progress: Callable[[ProgressEvent], Any] | None = ...,
                cancel: threading.Event | None = ..., quiet: bool = ...,
                max_tasks_per_worker: int | None = ..., resume: bool = ...) -> MapResult: ...
@overload
def map_batches(fn: Callable[[list[Any]], Sequence[Any]], items_or_folder: Any, *,
                mini_batch_size: int = ..., workers: int | None = ..., timeout: float = ...,
                max_retries: int = ..., init: Callable[[], Any] | None = ...,
                shutdown: Callable[[], Any] | None = ..., error_threshold: int = ...,
                mini_batch_error_threshold: int = ..., run_dir: str | os.PathLike[str] | None = ...,
                serial: bool = ..., stream: Literal[True],
                on_progress: Callable[[ProgressEvent], Any] | None = ...,
                cancel: threading.Event | None = ..., quiet: bool = ...,
                max_tasks_per_worker: int | None = ..., resume: bool = ...) -> MapStream: ...
def map_batches(fn: Callable[[list[Any]], Sequence[Any]], items_or_folder: Any, *,
                mini_batch_size: int = 1, workers: int | None = None, timeout: float = 60,
                max_retries: int = 2, init: Callable[[], Any] | None = None,
                shutdown: Callable[[], Any] | None = None, error_threshold: int = -1,
                mini_batch_error_threshold: int = 0,
                run_dir: str | os.PathLike[str] | None = None, serial: bool = False,
                stream: bool = False, on_progress: Callable[[ProgressEvent], Any] | None = None,
                cancel: threading.Event | None = None, quiet: bool = True,
                max_tasks_per_worker: int | None = None,
                resume: bool = False) -> MapResult | MapStream:
    """Run ``fn(mini_batch) -> list`` (one result per item, in order) over the items of
    ``items_or_folder`` in ``workers`` forked processes, with the retries, timeouts, error
    thresholds and exactly-once results of a parallel job; return the results in item
    order as a MapResult, or, with ``stream=True``, a MapStream that yields them in order
    as mini-batches complete while the run goes on in the background.

    ``items_or_folder``: a list (any sequence or iterable) of picklable-or-not objects, or
    a folder / file path, whose files reach fn as absolute paths. ``timeout``: seconds for
    one fn call (the worker is killed and the mini-batch retried). ``init`` / ``shutdown``:
    called once per worker process. ``mini_batch_error_threshold`` defaults to 0 (the first
    mini-batch that fails for good fails the job), unlike a YAML step's -1. ``resume``:
    finish the run in ``run_dir`` (a folder input only), running only what it had not
    accepted, if the input files are those it started with.

    Blocks until the run ends (stream=False). Raises MapArgumentError before anything runs
    for a bad argument; MapFailed / MapCancelled, carrying the RunResult, when the job did
    not succeed. Safe to call from any thread; installs no signal handler.
    """
    if not callable(fn):
        raise _argument_error("fn", f"expected a callable fn(mini_batch) -> list, not "
                              f"{type(fn).__name__}")
    for name, hook in (("init", init), ("shutdown", shutdown)):
        if hook is not None and not callable(hook):
            raise _argument_error(name, f"expected a callable taking no arguments, not "
                                  f"{type(hook).__name__}")
    if cancel is not None and not isinstance(cancel, threading.Event):
        raise _argument_error("cancel", f"expected a threading.Event, not "
                              f"{type(cancel).__name__}")
    size = _check_int("mini_batch_size", mini_batch_size, 1, "items per fn call")
    n_workers = (default_concurrency() if workers is None
                 else _check_int("workers", workers, 1, "worker processes (default: cores)"))
    if max_tasks_per_worker is not None:
        _check_int("max_tasks_per_worker", max_tasks_per_worker, 1,
                   "mini-batches a worker runs before it is replaced")
    limits = _limits(timeout, max_retries, error_threshold, mini_batch_error_threshold)
    if serial:
        # The serial executor comes with the engine split (issue 9); until it is merged
        # here this says so instead of quietly running in workers.
        raise _argument_error("serial", "serial=True is not available in this build yet",
                              "leave serial=False")
    plan = _plan(items_or_folder, size)
    run = _open_run(run_dir, resume, plan, cancel)
    outcome: Outcome | None = None
    handed_over = False  # to a MapStream, which cleans up when it ends
    try:
        name = f"{getattr(fn, '__module__', None)}.{getattr(fn, '__qualname__', type(fn))}"
        try:
            restored = restored_batches(run.layout, plan, {"fn": name,
                                                           "mini_batch_size": str(size)}, resume)
        except ResumeRefused as exc:
            raise _argument_error("resume", f"{run.run_dir} cannot be resumed: {exc}",
                                  "start a new run_dir") from None
        options = RunOptions(resume=resume, cancel=run.stop, on_progress=on_progress,
                             quiet=quiet)
        feed = Feed() if stream else None
        try:
            step = planned_step(run.layout, plan, limits, n_workers,
                                bound_script(fn, init, shutdown), restored, name, feed,
                                max_tasks=max_tasks_per_worker)
        except OSError as exc:
            raise _argument_error("run_dir", f"cannot write the run folder {run.run_dir}: "
                                  f"{exc.strerror or exc}") from None
        if feed is not None:
            streaming = MapStream(run, feed, step, options)
            handed_over = True
            return streaming
        outcome = run_planned(step, run.run_dir, options, run.started)
        result = run.result(outcome)
        if not outcome.succeeded:
            raise run.failure(outcome, result)
        assert step.output_file is not None
        return MapResult(list(run.in_order(read_chunks(step.output_file), outcome)), result)
    finally:
        if not handed_over:
            run.cleanup(outcome)


class _Stop(threading.Event):
    """The run's cancel event: set by a stream closed early, or the caller's own event
    (RunOptions.cancel is asked with is_set())."""

    def __init__(self, caller: threading.Event | None) -> None:
        super().__init__()
        self._caller = caller

    def is_set(self) -> bool:
        return super().is_set() or (self._caller is not None and self._caller.is_set())


class _Run:
    """What map_batches keeps of one run between its start and its results."""

    def __init__(self, plan: BatchPlan, layout: StepLayout, temporary: bool, stop: _Stop,
                 folder: RunFolder | None) -> None:
        self.plan, self.layout, self.temporary, self.stop = plan, layout, temporary, stop
        self.folder = folder  # the lock on a given run_dir
        self.started = time.monotonic()

    @property
    def run_dir(self) -> Path:
        return self.layout.root.parent

    def result(self, outcome: Outcome) -> RunResult:
        return RunResult.from_outcomes(self.run_dir, [outcome], time.monotonic() - self.started)

    def failure(self, outcome: Outcome, result: RunResult) -> MapFailed:
        """The error for a job that did not succeed."""
        if outcome.cancelled:
            return MapCancelled(f"map_batches was cancelled: {outcome.reason}", result)
        first = result.steps[0].failures[0] if result.steps[0].failures else None
        detail = (f"\nfirst failed {first.inputs}\nafter {first.attempts} attempt(s), last "
                  f"{first.status}: {first.error_type + ': ' if first.error_type else ''}"
                  f"{first.message}") if first else ""
        return MapFailed(f"map_batches failed: {outcome.reason}{detail}\n"
                         f"logs: {outcome.logs}", result)

    def in_order(self, chunks: Iterable[tuple[int, list[Any]]], outcome: Outcome,
                 start: int = 0) -> Iterator[Any]:
        """The items of chunks (ascending mini-batch indices) from mini-batch ``start``
        on, a Failure in place of each item of a mini-batch that has none (failed for
        good, which a succeeded job allows)."""
        failures = {f.batch: f for f in outcome.failures}
        batch = start
        for index, items in chunks:
            while batch < index:
                yield from self._failed(batch, failures)
                batch += 1
            yield from items
            batch = index + 1
        while batch < self.plan.n_batches:
            yield from self._failed(batch, failures)
            batch += 1

    def _failed(self, batch: int, failures: dict[int, Failure]) -> list[Failure]:
        failure = failures.get(batch) or Failure(batch, self.plan.describe(batch), 0,
                                                 "failed", "", "failed for good (see "
                                                 "job_error.txt)", "")
        return [failure] * self.plan.items_in(batch)

    def cleanup(self, outcome: Outcome | None) -> None:
        """Release a given run_dir; remove a temporary one unless the job failed (its logs
        are kept: the error names them). outcome None: the run never ended normally (bad
        input, an interrupt): nothing worth keeping."""
        if self.folder is not None:
            self.folder.release()
        failed = outcome is not None and not outcome.succeeded and not outcome.cancelled
        if self.temporary and not failed:
            shutil.rmtree(self.run_dir, ignore_errors=True)



class MapStream(Iterator[Any]):
    """fn's results in item order, as their mini-batches complete (map_batches with
    stream=True). Iterate it; ``close()`` (or the end of a ``with`` block, or dropping it)
    before the end cancels the run and returns once no worker is left. ``run`` is the
    RunResult once the run has ended, else None. A mini-batch that failed for good (when
    the thresholds allow it) holds back the results after it until the run ends."""

    def __init__(self, run: _Run, feed: Feed, step: PlannedStep, options: RunOptions) -> None:
        self._state = _StreamState(run, feed, step, options)
        self._items = _stream_items(self._state)  # refers to the state only, never to self

    @property
    def run(self) -> RunResult | None:
        return self._state.result

    def __iter__(self) -> MapStream:
        return self

    def __next__(self) -> Any:
        return next(self._items)

    def close(self) -> None:
        """Cancel the run if it still goes on; blocks until its workers have exited."""
        self._items.close()
        self._state.shutdown()

    def __enter__(self) -> MapStream:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        self.close()


class _StreamState:
    """A streaming run: the background thread that drives it, and how it ended."""

    def __init__(self, run: _Run, feed: Feed, step: PlannedStep, options: RunOptions) -> None:
        self.run, self.feed = run, feed
        self.outcome: Outcome | None = None
        self.error: BaseException | None = None
        self.result: RunResult | None = None
        self._done = False
        # Daemon: an abandoned stream never keeps the interpreter alive; its workers die
        # with the process (PR_SET_PDEATHSIG).
        self.thread = threading.Thread(target=self._drive, args=(step, options),
                                       name="parajob-map_batches", daemon=True)
        self.thread.start()

    def _drive(self, step: PlannedStep, options: RunOptions) -> None:
        try:
            self.outcome = run_planned(step, self.run.run_dir, options, self.run.started)
        except BaseException as exc:  # noqa: BLE001 - handed to the reading thread
            self.error = exc

    def join(self) -> Outcome:
        """Wait for the run's end; its outcome (or the error that ended it, raised)."""
        self.thread.join()
        if self.error is not None:
            raise self.error
        assert self.outcome is not None
        self.result = self.run.result(self.outcome)
        return self.outcome

    def shutdown(self) -> None:
        """Cancel (if still running), wait, remove a temporary folder; once."""
        if self._done:
            return
        self._done = True
        if self.thread.is_alive():
            self.run.stop.set()
            self.thread.join()
        if self.result is None and self.outcome is not None:
            self.result = self.run.result(self.outcome)
        self.run.cleanup(self.outcome)


def _stream_items(state: _StreamState) -> Generator[Any, None, None]:
    reader = ChunkReader(state.run.layout)
    try:
        batch, n_batches = 0, state.run.plan.n_batches
        while batch < n_batches:
            if reader.has(batch):
                yield from reader.take(batch)
                batch += 1
                continue
            try:
                reader.add(state.feed.queue.get(timeout=POLL_S))
                continue
            except queue.Empty:
                pass
            if not state.thread.is_alive():
                break
        outcome = state.join()
        while True:  # the last checkpoint, put just before the thread ended
            try:
                reader.add(state.feed.queue.get_nowait())
            except queue.Empty:
                break
        if not outcome.succeeded:
            while reader.has(batch):
                yield from reader.take(batch)
                batch += 1
            assert state.result is not None
            raise state.run.failure(outcome, state.result)
        yield from state.run.in_order(((b, reader.take(b)) for b in range(batch, n_batches)
                                       if reader.has(b)), outcome, batch)
    finally:
        reader.close()
        state.shutdown()
