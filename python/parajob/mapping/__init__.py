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
    results.pkl (merge, mini-batch order) -> MapRun.in_order -> MapResult    stream=False
    journal checkpoints -> spool records   -> mapping.stream.MapStream       stream=True

A job that does not succeed raises MapFailed (MapCancelled when cancelled), which carries
the RunResult. The run folder is a temporary one unless ``run_dir`` is given; it is removed
at the end unless the job failed (its logs are kept for reading, the error names it).
Workers are forked from the caller: fn may be a lambda, a closure or a bound method; its
results must be picklable (they travel back through the spool files).
"""

from __future__ import annotations

import os
import tempfile
import threading
from collections.abc import Callable, Iterable, Sequence
from contextlib import nullcontext
from pathlib import Path
from typing import Any, Literal, overload

from parajob import terminal
from parajob.data.batch_plan import BatchPlan
from parajob.data.files import InputDataError, plan_file_batches
from parajob.data.items import ItemBatchPlan
from parajob.errors import Diagnostic
from parajob.mapping.run import (
    MapArgumentError,
    MapCancelled,
    MapFailed,
    MapResult,
    MapRun,
    Stop,
)
from parajob.mapping.stream import MapStream
from parajob.runtime.accounting import Limits
from parajob.runtime.job import default_concurrency, run_planned
from parajob.runtime.layout import StepLayout
from parajob.runtime.map_step import (
    STEP_NAME,
    Feed,
    ResumeRefused,
    bound_script,
    planned_step,
    read_chunks,
    restored_batches,
)
from parajob.runtime.options import ProgressEvent, RunOptions, not_a_cancel_event
from parajob.runtime.report import Outcome
from parajob.runtime.run import one_run_at_a_time
from parajob.runtime.run_folder import RunFolder
from parajob.spec.arguments import RuntimeArgs

__all__ = ["MapArgumentError", "MapCancelled", "MapFailed", "MapResult", "MapStream", "map_batches"]

MAX_TIMEOUT_S = 259200  # retry_settings.timeout's upper bound (docs/contract.md §2.1)


def _argument_error(parameter: str, message: str, hint: str | None = None) -> MapArgumentError:
    return MapArgumentError([Diagnostic("map_batches", None, None, parameter, message, hint)])


def _check_int(name: str, value: object, low: int, hint: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise _argument_error(name, f"must be an integer >= {low}, not {value!r}", hint)
    return value


def _check_callables(fn: object, init: object, shutdown: object, cancel: object) -> None:
    if not callable(fn):
        raise _argument_error(
            "fn", f"expected a callable fn(mini_batch) -> list, not {type(fn).__name__}"
        )
    for name, hook in (("init", init), ("shutdown", shutdown)):
        if hook is not None and not callable(hook):
            raise _argument_error(
                name, f"expected a callable taking no arguments, not {type(hook).__name__}"
            )
    problem = not_a_cancel_event(cancel)
    if problem is not None:
        raise _argument_error("cancel", problem)


def _limits(
    timeout: float, max_retries: int, error_threshold: int, mini_batch_error_threshold: int
) -> Limits:
    if (
        isinstance(timeout, bool)
        or not isinstance(timeout, (int, float))
        or not 0 < timeout <= MAX_TIMEOUT_S
    ):
        raise _argument_error(
            "timeout",
            f"must be seconds in (0, {MAX_TIMEOUT_S}], not {timeout!r}",
            "the longest one fn(mini_batch) call may take",
        )
    defaults = RuntimeArgs()  # the program arguments' defaults, as a YAML step without any
    return Limits(
        max_retries=_check_int("max_retries", max_retries, 0, "retries after the first try"),
        run_timeout_s=float(timeout),
        load_timeout_s=float(defaults.task_overhead_timeout),
        progress_update_timeout_s=defaults.progress_timeout(float(timeout)),
        error_threshold=_check_int(
            "error_threshold", error_threshold, -1, "failed items allowed; -1 ignores them"
        ),
        mini_batch_error_threshold=_check_int(
            "mini_batch_error_threshold",
            mini_batch_error_threshold,
            -1,
            "failed mini-batches allowed; -1 ignores them",
        ),
    )


def _plan(items: object, size: int) -> BatchPlan:
    """A folder or file (str / PathLike): its files; any other iterable: its items."""
    if isinstance(items, (str, os.PathLike)):
        path = Path(os.fspath(items))
        if not path.exists():
            raise _argument_error(
                "items_or_folder",
                f"no such folder or file: {path}",
                "pass a folder of input files, or a list of items",
            )
        try:
            return plan_file_batches(path, "uri_file" if path.is_file() else "uri_folder", size)
        except InputDataError as exc:
            raise _argument_error("items_or_folder", str(exc)) from None
    if isinstance(items, (bytes, bytearray)):
        raise _argument_error(
            "items_or_folder",
            "got bytes",
            "pass a list of items, or a folder as str / pathlib.Path",
        )
    if type(items).__name__ == "DataFrame" and hasattr(items, "to_dict"):
        # Iterating a DataFrame gives its column names: never what a caller means here.
        raise _argument_error(
            "items_or_folder",
            "got a DataFrame, whose items would be its column names",
            "pass its rows, e.g. df.to_dict('records') or list(df.itertuples(index=False))",
        )
    if isinstance(items, Sequence):
        return ItemBatchPlan(items, size)
    if isinstance(items, Iterable):  # a generator, a set: taken once, in its order
        return ItemBatchPlan(list(items), size)
    raise _argument_error(
        "items_or_folder", f"expected a folder or an iterable of items, not {type(items).__name__}"
    )


def _open_run(
    run_dir: str | os.PathLike[str] | None,
    resume: bool,
    plan: BatchPlan,
    cancel: threading.Event | None,
) -> MapRun:
    """The run's folder: a temporary one of ours, or the given one, held (RunFolder's lock)
    until the run's cleanup; a given one must be new, or, with resume, hold a run."""
    if run_dir is None:
        if resume:
            raise _argument_error(
                "resume", "resume=True needs run_dir=, the folder of the run to finish"
            )
        path = Path(tempfile.mkdtemp(prefix="parajob-map-"))
        return MapRun(plan, StepLayout(path / STEP_NAME), True, Stop(cancel), None)
    path = Path(os.fspath(run_dir))
    if resume and isinstance(plan, ItemBatchPlan):
        raise _argument_error(
            "resume",
            "a run over in-memory items cannot be resumed (they are not kept anywhere)",
            "run it again; a folder input resumes",
        )
    folder = RunFolder.acquire(path)  # RunFolderInUse: another run holds it
    step = path / STEP_NAME
    if resume and not step.is_dir():
        folder.discard_if_unused()
        raise _argument_error(
            "resume",
            f"{path} holds no map_batches run ({step} is missing)",
            "give the run_dir of the run to finish",
        )
    if not resume and step.exists() and any(step.iterdir()):
        folder.release()
        raise _argument_error(
            "run_dir",
            f"{path} already holds a map_batches run ({step})",
            "pass resume=True to finish it (a folder input), or choose a new run_dir",
        )
    return MapRun(plan, StepLayout(step), False, Stop(cancel), folder)


@overload
def map_batches(
    fn: Callable[[list[Any]], Sequence[Any]],
    items_or_folder: Any,
    *,
    mini_batch_size: int = ...,
    workers: int | None = ...,
    timeout: float = ...,
    max_retries: int = ...,
    init: Callable[[], Any] | None = ...,
    shutdown: Callable[[], Any] | None = ...,
    error_threshold: int = ...,
    mini_batch_error_threshold: int = ...,
    run_dir: str | os.PathLike[str] | None = ...,
    serial: bool = ...,
    stream: Literal[False] = ...,
    on_progress: Callable[[ProgressEvent], Any] | None = ...,
    cancel: threading.Event | None = ...,
    quiet: bool = ...,
    max_tasks_per_worker: int | None = ...,
    resume: bool = ...,
) -> MapResult: ...
@overload
def map_batches(
    fn: Callable[[list[Any]], Sequence[Any]],
    items_or_folder: Any,
    *,
    mini_batch_size: int = ...,
    workers: int | None = ...,
    timeout: float = ...,
    max_retries: int = ...,
    init: Callable[[], Any] | None = ...,
    shutdown: Callable[[], Any] | None = ...,
    error_threshold: int = ...,
    mini_batch_error_threshold: int = ...,
    run_dir: str | os.PathLike[str] | None = ...,
    serial: bool = ...,
    stream: Literal[True],
    on_progress: Callable[[ProgressEvent], Any] | None = ...,
    cancel: threading.Event | None = ...,
    quiet: bool = ...,
    max_tasks_per_worker: int | None = ...,
    resume: bool = ...,
) -> MapStream: ...
def map_batches(
    fn: Callable[[list[Any]], Sequence[Any]],
    items_or_folder: Any,
    *,
    mini_batch_size: int = 1,
    workers: int | None = None,
    timeout: float = 60,
    max_retries: int = 2,
    init: Callable[[], Any] | None = None,
    shutdown: Callable[[], Any] | None = None,
    error_threshold: int = -1,
    mini_batch_error_threshold: int = 0,
    run_dir: str | os.PathLike[str] | None = None,
    serial: bool = False,
    stream: bool = False,
    on_progress: Callable[[ProgressEvent], Any] | None = None,
    cancel: threading.Event | None = None,
    quiet: bool = True,
    max_tasks_per_worker: int | None = None,
    resume: bool = False,
) -> MapResult | MapStream:
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
    accepted, if the input files are those it started with. ``serial``: fn runs in the
    calling process and thread instead (pdb works; timeouts are reported, not enforced);
    with ``stream=True``, in the stream's background thread of this process.

    Blocks until the run ends (stream=False). Raises MapArgumentError before anything runs
    for a bad argument; MapFailed / MapCancelled, carrying the RunResult, when the job did
    not succeed. Safe to call from any thread; installs no signal handler.
    """
    _check_callables(fn, init, shutdown, cancel)
    size = _check_int("mini_batch_size", mini_batch_size, 1, "items per fn call")
    n_workers = (
        default_concurrency()
        if workers is None
        else _check_int("workers", workers, 1, "worker processes (default: cores)")
    )
    if max_tasks_per_worker is not None:
        _check_int(
            "max_tasks_per_worker",
            max_tasks_per_worker,
            1,
            "mini-batches a worker runs before it is replaced",
        )
    limits = _limits(timeout, max_retries, error_threshold, mini_batch_error_threshold)
    plan = _plan(items_or_folder, size)
    run = _open_run(run_dir, resume, plan, cancel)
    outcome: Outcome | None = None
    handed_over = False  # to a MapStream, which cleans up when it ends
    try:
        name = f"{getattr(fn, '__module__', None)}.{getattr(fn, '__qualname__', type(fn))}"
        try:
            # fn is not compared: its name is no identity (lambdas, a notebook's edits) and
            # its code has no file to hash; resume trusts the caller (README).
            restored = restored_batches(run.layout, plan, {"mini_batch_size": str(size)}, resume)
        except ResumeRefused as exc:
            raise _argument_error(
                "resume", f"{run.run_dir} cannot be resumed: {exc}", "start a new run_dir"
            ) from None
        # a stopped run names how to finish it: map_batches itself, never `parajob run`
        hint = (
            ""
            if run.temporary or isinstance(plan, ItemBatchPlan)
            else f"map_batches(fn, {os.fspath(items_or_folder)!r}, run_dir="
            f"{os.fspath(run.run_dir)!r}, resume=True)"
        )
        options = RunOptions(
            resume=resume,
            cancel=run.stop,
            on_progress=on_progress,
            quiet=quiet,
            serial=serial,
            resume_hint=hint,
        )
        feed = Feed() if stream else None
        try:
            step = planned_step(
                run.layout,
                plan,
                limits,
                n_workers,
                bound_script(fn, init, shutdown),
                restored,
                name,
                feed,
                max_tasks=max_tasks_per_worker,
            )
        except OSError as exc:
            raise _argument_error(
                "run_dir", f"cannot write the run folder {run.run_dir}: {exc.strerror or exc}"
            ) from None
        if feed is not None:
            streaming = MapStream(run, feed, step, options)
            handed_over = True
            return streaming
        # One job at a time per process (runtime/run.py); quiet: warnings to the logger
        with one_run_at_a_time(), terminal.muted() if quiet else nullcontext():
            outcome = run_planned(step, run.run_dir, options, run.started)
        result = run.result(outcome)
        if not outcome.succeeded:
            raise run.failure(outcome, result)
        assert step.output_file is not None
        return MapResult(list(run.in_order(read_chunks(step.output_file), outcome)), result)
    finally:
        if not handed_over:
            run.cleanup(outcome)
