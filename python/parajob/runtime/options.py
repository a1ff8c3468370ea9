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
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

__all__ = [
    "ProgressEvent",
    "RunOptions",
    "StopRequests",
    "not_a_cancel_event",
    "release_held_signals",
    "signals_held",
]


@dataclass(frozen=True)
class ProgressEvent:
    """A parallel step's counts at one moment (``on_progress``), and once more at its end
    (``final``). Counts are those of job_result.txt."""

    step: str
    total_batches: int
    settled_batches: int  # completed or failed for good
    done_batches: int
    failed_batches: int
    failed_attempts: int
    items_in: int
    items_out: int
    failed_items: int
    running: int  # worker processes inside run() now
    elapsed_s: float
    final: bool = False


@dataclass(frozen=True)
class RunOptions:
    """How to run, beyond what the pipeline says (command-line options, parajob.run)."""

    resume: bool = False  # finish a killed or interrupted run in place
    # With resume: rerun what changed since the run started (mini-batches whose input
    # digest differs, and all of them after a code change) instead of refusing.
    rerun_changed: bool = False
    max_tasks_per_worker: int | None = None
    max_worker_memory_bytes: int | None = None
    serial: bool = False  # init/run/shutdown in the calling process (pdb)
    cancel: threading.Event | None = None  # set from any thread: stop now, resumable
    on_progress: Callable[[ProgressEvent], Any] | None = None
    quiet: bool = False  # no progress lines and no command output on stderr
    handle_signals: bool = False  # SIGINT/SIGTERM stop the run (the CLI asks for it)
    # How a stopped run is finished, for its reason: None: "parajob run --resume <run_dir>";
    # "" when it cannot be (map_batches over in-memory items, or a temporary folder).
    resume_hint: str | None = None
    # compute name -> Dask scheduler address (--compute NAME=ADDR): steps whose compute is
    # mapped run their instance_count nodes on that cluster (runtime/computes.py).
    computes: Mapping[str, str] = field(default_factory=dict)
    # compute name -> the computes file it came from, for the names of `computes` that the
    # file gave (not --compute / compute=): messages name where a mapping was written.
    computes_from_file: Mapping[str, str] = field(default_factory=dict)
    # --isolate-failures N: every parallel step's --isolate_failures (runtime/isolation.py);
    # None: each step's own program argument.
    isolate_failures: int | None = None
    # --skip-items FILE: a quarantine.csv whose items are left out of their steps' input.
    skip_items: Path | None = None


def not_a_cancel_event(value: object) -> str | None:
    """Why ``value`` cannot be RunOptions.cancel (None: it can). Named in full: the
    multiprocessing and asyncio events are called "Event" too, and are not checked here."""
    if value is None or isinstance(value, threading.Event):
        return None
    kind = type(value)
    return f"expected a threading.Event, found {kind.__module__}.{kind.__qualname__}"


class StopRequests:
    """SIGINT/SIGTERM (when asked for, from the main thread) and the caller's cancel event,
    as one question: ``requested()``. A context manager: handlers are installed on entry
    and the previous ones put back on exit.

    The handler only records the signal and calls ``wake`` (it runs between any two
    bytecodes of the caller's loop, which turns it into a stop reason itself)."""

    def __init__(self, options: RunOptions, wake: Callable[[], None] | None = None) -> None:
        self._cancel = options.cancel
        self._wake = wake
        self._wanted = (
            options.handle_signals and threading.current_thread() is threading.main_thread()
        )
        self._previous: dict[int, Any] = {}
        self.signalled: int | None = None

    def __enter__(self) -> StopRequests:
        if self._wanted:
            self._previous = {
                s: signal.signal(s, self._on_signal) for s in (signal.SIGINT, signal.SIGTERM)
            }
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
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


_STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)
_handlers_before_hold: dict[int, Any] | None = None  # inside signals_held(): to put back


@contextmanager
def signals_held() -> Iterator[None]:
    """SIGINT and SIGTERM held back inside the block: their handlers, a host's
    KeyboardInterrupt included, run once it ends, never in its middle. For the few steps
    that must happen together or not at all: forking a worker and recording it (a
    KeyboardInterrupt between the two left a live worker the engine did not know, whose
    first result then raised KeyError). Python runs signal handlers in the main thread
    only, so only there is anything to hold; a signal mask would not do (the kernel hands
    a process's signal to any thread that does not block it). A process forked inside
    puts the handlers back first: release_held_signals()."""
    global _handlers_before_hold
    if (
        threading.current_thread() is not threading.main_thread()
        or _handlers_before_hold is not None
    ):
        yield
        return
    caught: list[int] = []
    _handlers_before_hold = {
        s: signal.signal(s, lambda signum, _frame: caught.append(signum)) for s in _STOP_SIGNALS
    }
    try:
        yield
    finally:
        release_held_signals()
        for signum in dict.fromkeys(caught):  # each once, now, to the handler it was for
            signal.raise_signal(signum)


def release_held_signals() -> None:
    """Put back the handlers signals_held() replaced (at its end, and first thing in a
    process forked inside it)."""
    global _handlers_before_hold
    if _handlers_before_hold is not None:
        for s, handler in _handlers_before_hold.items():
            if handler is not None:  # None: a handler not set from Python, left as it is
                signal.signal(s, handler)
        _handlers_before_hold = None
