"""map_batches(stream=True): the results in item order as their mini-batches complete.

    background thread:  run_planned(step) -- driver -- journal checkpoint --+
                                                                         | Feed (queue)
    caller's thread:    MapStream.__next__ <- ChunkReader (spool records) <-+
                          in mini-batch order; waits at most POLL_S before it looks at
                          whether the run has ended

Closing the stream early (close(), the end of a with block, dropping it) sets the run's
cancel event and joins the thread: the driver stops its workers before it returns, so no
process is left. The generator refers to the state only, never to the MapStream, so that
dropping the MapStream finalises it at once. ``on_progress`` is called from the
background thread. Replacement workers are forked from that thread while the caller's
runs on (CPython re-initialises its own locks in the child; a lock of the caller's held
across a fork stays held in the child, so fn should not take one the loop body holds).
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Generator, Iterator
from contextlib import nullcontext
from typing import Any

from parajob import terminal
from parajob.mapping.run import MapRun
from parajob.results import RunResult
from parajob.runtime.job import PlannedStep, run_planned
from parajob.runtime.map_step import ChunkReader, Feed
from parajob.runtime.options import RunOptions
from parajob.runtime.report import Outcome
from parajob.runtime.run import one_run_at_a_time

POLL_S = 0.25  # a streaming reader's longest wait before it looks at the run again


class MapStream(Iterator[Any]):
    """fn's results in item order, as their mini-batches complete (map_batches with
    stream=True). Iterate it; ``close()`` (or the end of a ``with`` block, or dropping it)
    before the end cancels the run and returns once no worker is left. ``run`` is the
    RunResult once the run has ended, else None. A mini-batch that failed for good (when
    the thresholds allow it) holds back the results after it until the run ends."""

    def __init__(self, run: MapRun, feed: Feed, step: PlannedStep, options: RunOptions) -> None:
        self._state = StreamState(run, feed, step, options)
        self._items = stream_items(self._state)  # refers to the state only, never to self

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


class StreamState:
    """A streaming run: the background thread that drives it, and how it ended."""

    def __init__(self, run: MapRun, feed: Feed, step: PlannedStep, options: RunOptions) -> None:
        self.run, self.feed = run, feed
        self.outcome: Outcome | None = None
        self.error: BaseException | None = None
        self.result: RunResult | None = None
        self._done = False
        # Daemon: an abandoned stream never keeps the interpreter alive; its workers die
        # with the process (PR_SET_PDEATHSIG).
        self.thread = threading.Thread(
            target=self._drive, args=(step, options), name="parajob-map_batches", daemon=True
        )
        self.thread.start()

    def _drive(self, step: PlannedStep, options: RunOptions) -> None:
        try:
            # One job at a time per process (runtime/run.py); quiet: warnings to the logger
            with one_run_at_a_time(), terminal.muted() if options.quiet else nullcontext():
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


def stream_items(state: StreamState) -> Generator[Any, None, None]:
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
        yield from state.run.in_order(
            ((b, reader.take(b)) for b in range(batch, n_batches) if reader.has(b)), outcome, batch
        )
    finally:
        reader.close()
        state.shutdown()
