"""The runtime side of parajob.map_batches: a Python callable run as a parallel step.

    caller: fn, init, shutdown, a plan (ItemBatchPlan or FileBatchPlan), limits
        |  planned_step()
        v
    PlannedStep(script=bound_script(fn), encode=encode_results) --run_planned--> workers
        |                      (forked: fn is inherited, never pickled nor imported)
        |   worker: run(mini_batch) -> fn(mini_batch) -> Results(batch, list) -> pickle
        v
    spool records (batch, [results]) --merge, in mini-batch order--> <run>/map/outputs/
        |                                                             results.pkl
        +--(stream)-- journal checkpoint -> Feed -> ChunkReader reads each record itself

results.pkl is a stream of pickles, one ``(mini-batch index, [one result per item])`` per
completed mini-batch, in mini-batch order: read it back with repeated ``pickle.load``
(:func:`read_chunks`). A mini-batch that failed for good has no record there.

Everything here but the worker's ``run`` wrapper and ``encode_results`` runs in the
caller's process; those two run in the forked workers.
"""

from __future__ import annotations

import os
import pickle
import queue
import types
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from parajob import _core
from parajob.data.batch_plan import BatchPlan
from parajob.errors import ParajobError
from parajob.runtime.accounting import Limits
from parajob.runtime.entry_script import EntryScript, MiniBatchContext
from parajob.runtime.fingerprint import (
    CodeFingerprint,
    FingerprintError,
    RunFingerprint,
    first_change,
)
from parajob.runtime.job import PlannedStep, Restored, intact_only
from parajob.runtime.journal import Accepted, journal_path, journal_start, read_journal
from parajob.runtime.layout import StepLayout
from parajob.runtime.spool import SpoolReader
from parajob.runtime.worker import WorkerSetup

STEP_NAME = "map"
RESULTS_FILE = "results.pkl"


class MapResultError(ParajobError):
    """fn returned something that is not one result per item (raised in the worker: the
    attempt fails with this message, and is retried like any other failure)."""


class UnpicklableResult(ParajobError):
    """fn's results cannot be pickled, so they cannot reach the caller (in the worker)."""


class Results(list):  # type: ignore[type-arg]
    """fn's results for one mini-batch, tagged with its index for encode_results. A list,
    so the runtime counts its items as it counts run()'s."""

    __slots__ = ("batch",)

    def __init__(self, batch: int, items: list[Any] | tuple[Any, ...]) -> None:
        super().__init__(items)
        self.batch = batch


def bound_script(
    fn: Callable[[list[Any]], Any],
    init: Callable[[], Any] | None,
    shutdown: Callable[[], Any] | None,
) -> EntryScript:
    """An EntryScript whose run() calls fn and checks it gave one result per item."""

    def run(mini_batch: list[Any], context: MiniBatchContext) -> Results:
        out = fn(mini_batch)
        if not isinstance(out, (list, tuple)):
            raise MapResultError(
                f"fn returned {type(out).__name__}; it must return a list "
                "with one result per item of its mini-batch"
            )
        if len(out) != len(mini_batch):
            raise MapResultError(
                f"fn returned {len(out)} results for a mini-batch of "
                f"{len(mini_batch)} items; it must return one result per "
                "item, in the items' order"
            )
        return Results(context.minibatch_index, out)

    module = types.ModuleType(getattr(fn, "__module__", None) or "__main__")
    return EntryScript(module=module, init=init, run=run, shutdown=shutdown, takes_context=True)


def encode_results(result: Results) -> bytes:
    """The spool record of an accepted mini-batch (in the worker): its pickled results."""
    try:
        return pickle.dumps((result.batch, result[:]), protocol=pickle.HIGHEST_PROTOCOL)
    except Exception as exc:  # noqa: BLE001 - pickle raises many types (TypeError, ...)
        raise UnpicklableResult(
            f"fn's results for mini-batch {result.batch} cannot be pickled to reach the "
            f"caller ({type(exc).__name__}: {exc}); return picklable values (numbers, "
            "strings, lists, dicts, dataclasses of those), not open files, locks, "
            "generators or lambdas"
        ) from None


class ResumeRefused(ParajobError):
    """The run folder cannot be resumed with this input and fn (the message says why)."""


def restored_batches(
    layout: StepLayout, plan: BatchPlan, settings: dict[str, str], resume: bool
) -> Restored:
    """What the step starts from: nothing (fresh), or on resume the journalled batches
    whose records still validate, when the input files (path, size, mtime per mini-batch)
    and the settings (the mini-batch size) are those the run started with; else
    ResumeRefused. fn is not compared: it has no file to hash."""
    now = RunFingerprint(plan.fingerprints(), plan.n_items, CodeFingerprint(), settings)
    journal = read_journal(journal_path(layout.root)) if resume else None
    if journal is None:  # fresh, or the run died before its journal was started
        return Restored(
            Accepted.none(), journal_start(now.to_bytes(), plan.n_batches, plan.n_items), now
        )
    try:
        then = RunFingerprint.from_bytes(journal.fingerprint or b"")
    except FingerprintError as exc:
        raise ResumeRefused(f"its journal cannot be read ({exc})") from None
    setting = then.first_setting_change(now)
    change = first_change(then, now, plan, layout.root) if setting is None else None
    if setting is not None or change is not None:
        raise ResumeRefused(
            f"{setting} since the run started"
            if setting is not None
            else change.message
            if change is not None
            else ""
        )
    return Restored(intact_only(layout, journal.accepted), None, now)


def planned_step(
    layout: StepLayout,
    plan: BatchPlan,
    limits: Limits,
    workers: int,
    script: EntryScript,
    restored: Restored,
    name: str,
    on_accepted: Callable[[Accepted], None] | None = None,
    max_tasks: int | None = None,
) -> PlannedStep:
    """The step run_planned runs for map_batches; its layout is created here."""
    layout.create()
    output = layout.outputs_dir / RESULTS_FILE

    def make_setup(region: _core.DispatchRegion, workers_per_node: int) -> WorkerSetup:
        return WorkerSetup(
            region=region,
            plan=plan,
            layout=layout,
            code_dir=Path.cwd(),
            entry_script=name,
            argv=(),
            environment={},
            append_row=True,
            csv_options={},
            logging_level="INFO",
            output_dir=layout.outputs_dir,
            driver_pid=os.getpid(),
            max_tasks=max_tasks,
            workers_per_node=workers_per_node,
            script=script,
            encode=encode_results,  # its run() returns Results
        )

    return PlannedStep(
        STEP_NAME,
        layout,
        plan,
        limits,
        restored,
        1,
        workers,
        make_setup,
        output,
        on_accepted=on_accepted,
    )


def read_chunks(path: Path) -> Iterator[tuple[int, list[Any]]]:
    """(mini-batch index, results) of each record of a results.pkl, in file order."""
    with open(path, "rb") as f:
        while True:
            try:
                batch, items = pickle.load(f)
            except EOFError:
                return
            yield batch, items


class Feed:
    """Accepted, journalled mini-batches, from the driver's thread to a streaming reader:
    called with each checkpoint (JournalWriter's on_checkpoint); never blocks."""

    def __init__(self) -> None:
        self.queue: queue.SimpleQueue[Accepted] = queue.SimpleQueue()

    def __call__(self, accepted: Accepted) -> None:
        self.queue.put(accepted)


class ChunkReader:
    """The results of accepted mini-batches, read from the spools by their journalled
    place (process, offset, length), while the workers go on appending. A journalled
    record was checked (CRC32) before it was accepted and is final: this never sees an
    attempt that does not count."""

    def __init__(self, layout: StepLayout) -> None:
        self._spools = SpoolReader(layout.spool_dir)
        self._places: dict[int, tuple[int, int, int]] = {}  # batch -> (process, off, len)

    def add(self, accepted: Accepted) -> None:
        for b, p, o, n in zip(
            accepted.batch.tolist(),
            accepted.process.tolist(),
            accepted.offset.tolist(),
            accepted.length.tolist(),
            strict=True,
        ):
            self._places[int(b)] = (int(p), int(o), int(n))

    def has(self, batch: int) -> bool:
        return batch in self._places

    def take(self, batch: int) -> list[Any]:
        process, offset, length = self._places.pop(batch)
        payload = self._spools.payload(process, offset, length, batch)
        if payload is None:  # cannot happen unless the spool was changed since its check
            raise ParajobError(
                f"the result record of mini-batch {batch} no longer validates "
                "(its spool file was modified while the run went on)"
            )
        _batch, items = pickle.loads(payload)
        return list(items)

    def close(self) -> None:
        self._spools.close()
