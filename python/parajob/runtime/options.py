"""How a run is driven, beyond what the pipeline says: the caller's options, and who may
stop a run early.

    CLI (options, handle_signals=True) / parajob.run (options, cancel=Event, on_progress=f)
        |
    RunOptions ---> runner ---> each step: StopRequests(options) around its loop
                                   |  SIGINT/SIGTERM (only when handle_signals, main thread)
                                   |  options.cancel.set() from any thread
                                   v
                                requested() -> the reason the step stops (resumable)

A library caller's process keeps its own signal handlers: parajob installs handlers only
when the caller asks (the CLI does) and only from the main thread, where Python allows it.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

__all__ = ["ProgressEvent", "RunOptions", "StopRequests"]


@dataclass(frozen=True)
class ProgressEvent:
    """A parallel step's counts at one moment (``on_progress``), and once more at its end
    (``final``). Counts are those of job_result.txt."""

    step: str
    total_batches: int
    settled_batches: int    # completed or failed for good
    done_batches: int
    failed_batches: int
    failed_attempts: int
    items_in: int
    items_out: int
    failed_items: int
    running: int            # worker processes inside run() now
    elapsed_s: float
    final: bool = False


@dataclass(frozen=True)
class RunOptions:
    """How to run, beyond what the pipeline says (command-line options, parajob.run)."""

    resume: bool = False                 # finish a killed or interrupted run in place
    # With resume: rerun what changed since the run started (mini-batches whose input
    # digest differs, and all of them after a code change) instead of refusing.
    rerun_changed: bool = False
    max_tasks_per_worker: int | None = None
    max_worker_memory_bytes: int | None = None
    serial: bool = False                 # init/run/shutdown in the calling process (pdb)
    cancel: threading.Event | None = None  # set from any thread: stop now, resumable
    on_progress: Callable[[ProgressEvent], Any] | None = None
    quiet: bool = False                  # no progress lines and no command output on stderr
    handle_signals: bool = False         # SIGINT/SIGTERM stop the run (the CLI asks for it)
    # compute name -> Dask scheduler address (--compute NAME=ADDR): steps whose compute is
    # mapped run their instance_count nodes on that cluster (runtime/computes.py).
    computes: Mapping[str, str] = field(default_factory=dict)


class StopRequests:
    """SIGINT/SIGTERM (when asked for, from the main thread) and the caller's cancel event,
    as one question: ``requested()``. A context manager: handlers are installed on entry
    and the previous ones put back on exit.

    The handler only records the signal and calls ``wake`` (it runs between any two
    bytecodes of the caller's loop, which turns it into a stop reason itself)."""

    def __init__(self, options: RunOptions, wake: Callable[[], None] | None = None) -> None:
        self._cancel = options.cancel
        self._wake = wake
        self._wanted = (options.handle_signals
                        and threading.current_thread() is threading.main_thread())
        self._previous: dict[int, Any] = {}
        self.signalled: int | None = None

    def __enter__(self) -> StopRequests:
        if self._wanted:
            self._previous = {s: signal.signal(s, self._on_signal)
                              for s in (signal.SIGINT, signal.SIGTERM)}
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        for s, handler in self._previous.items():
            signal.signal(s, handler)
        self._previous = {}

    def _on_signal(self, signum: int, _frame: object) -> None:
        self.signalled = signum
        if self._wake is not None:
            self._wake()

    @property
    def cancelled(self) -> bool:
        return self.signalled is None and self._cancel is not None and self._cancel.is_set()

    def requested(self) -> str | None:
        """Why the run must stop now (None: it goes on)."""
        if self.signalled is not None:
            return f"interrupted by {signal.Signals(self.signalled).name}"
        if self.cancelled:
            return "cancelled by the caller"
        return None
