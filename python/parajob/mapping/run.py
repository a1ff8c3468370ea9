"""The shapes a map_batches run ends with (MapResult, MapFailed, ...), and what it keeps
of one run between its start and its results (MapRun): its folder, its plan, its cancel
event, and how its results are put in item order.

    MapRun.in_order(chunks)   (mini-batch index, results) in ascending order, with gaps
        |                     for mini-batches that failed for good
        v
    items in item order, a Failure in each place of a gap's items
"""

from __future__ import annotations

import shutil
import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from parajob.data.batch_plan import BatchPlan
from parajob.errors import JobFailed, SpecError
from parajob.results import Failure, RunResult
from parajob.runtime.layout import StepLayout
from parajob.runtime.report import Outcome
from parajob.runtime.run_folder import RunFolder


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


class Stop(threading.Event):
    """The run's cancel event: set by a stream closed early, or the caller's own event
    (RunOptions.cancel is asked with is_set())."""

    def __init__(self, caller: threading.Event | None) -> None:
        super().__init__()
        self._caller = caller

    def is_set(self) -> bool:
        return super().is_set() or (self._caller is not None and self._caller.is_set())


class MapRun:
    """What map_batches keeps of one run between its start and its results."""

    def __init__(
        self,
        plan: BatchPlan,
        layout: StepLayout,
        temporary: bool,
        stop: Stop,
        folder: RunFolder | None,
    ) -> None:
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
        detail = (
            (
                f"\nfirst failed {first.inputs}\nafter {first.attempts} attempt(s), last "
                f"{first.status}: {first.error_type + ': ' if first.error_type else ''}"
                f"{first.message}"
            )
            if first
            else ""
        )
        return MapFailed(
            f"map_batches failed: {outcome.reason}{detail}\nlogs: {outcome.logs}", result
        )

    def in_order(
        self, chunks: Iterable[tuple[int, list[Any]]], outcome: Outcome, start: int = 0
    ) -> Iterator[Any]:
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
        failure = failures.get(batch) or Failure(
            batch,
            self.plan.describe(batch),
            0,
            "failed",
            "",
            "failed for good (see job_error.txt)",
            "",
        )
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
