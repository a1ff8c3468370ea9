"""Poison-item isolation (``--isolate_failures N``): a mini-batch that has used up its
retries is bisected into sub-batches until each failing piece is one item, which is
quarantined; the good pieces complete normally (docs/contract.md §4.6).

    Engine._end_attempt, retries spent --> Bisection.failed(batch) --> Decision:
        split: two children (PieceTable rows written, then queued) | quarantined | ignored
    Engine._accept, sub-batches        --> Bisection.accepted(pieces)
    either, when a mini-batch has no piece left running --> its Bisected (the engine's tally)

    driver: PieceTable.rows[sub - n] = (root, start, stop), then enqueue(sub)
    worker: IsolatingPlan.materialise(sub) = plan.materialise(root)[start:stop]
    merge:  DONE slots in (root, start) order (merge_order), exactly once: the accepted
            pieces of a mini-batch are disjoint
    journal: a KIND_PIECE record before each accepted sub-batch's (journal.py); resume
            (Bisection.restore) keeps the accepted pieces and bisects the rest again

A sub-batch is a batch of the same DispatchRegion with an index >= the plan's n_batches:
the region is sized for n_batches + capacity slots, so the claim, the watchdog, the
spools and the merge are the ones every mini-batch has. Each sub-batch gets one try: its
mini-batch already failed max_retries + 1 times, so a piece that fails once holds the
poison. Reruns that were not its fault stay free, as for any batch.

The budget: a piece that fails at depth d is split in two at depth d + 1; as soon as more
than N pieces of one mini-batch have failed at one depth (the pieces of a depth are
disjoint, so it holds more than N failing items), or a single item fails when N are
quarantined already, splitting stops and the mini-batch fails as it would without
isolation, none of its rows kept: whether it does depends only on which items fail, not on
the order pieces ran in nor on a resume. So each failing mini-batch of n
items costs at most 2 x N x ceil(log2 n) sub-batch attempts. A mini-batch more than half of
whose items end quarantined fails as a whole too (a script that fails on everything, a
mini-batch of 2 whose items both fail): isolation keeps the good rows of a mostly good one.
A mini-batch of one item is quarantined as it is (never split).
The job-wide cap is the capacity: once every slot is used, further failing mini-batches
fail as without isolation.
"""

from __future__ import annotations

import csv
import math
import mmap
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from parajob.data.batch_plan import BatchPlan, WrappedPlan
from parajob.runtime.failures import error_line
from parajob.runtime.layout import StepLayout
from parajob.runtime.spool import write_atomically

MAX_CAPACITY = 1 << 16  # sub-batch slots per step: 64 B each in the region, 24 B here
MIN_CAPACITY = 1024


def capacity_for(n_batches: int, max_quarantined: int, max_size: int) -> int:
    """Sub-batch slots for a step: room for a quarter of its mini-batches to be bisected at
    full budget, within [MIN_CAPACITY, MAX_CAPACITY]."""
    per_batch = 2 * max_quarantined * max(1, math.ceil(math.log2(max(max_size, 2))))
    wanted = per_batch * max(1, n_batches // 4)
    return int(min(MAX_CAPACITY, max(MIN_CAPACITY, wanted)))


class PieceTable:
    """(root mini-batch, start, stop) of each sub-batch slot: an anonymous shared mapping
    made before the first fork, so that workers read what the driver writes before it
    queues a sub-batch (the enqueue's release orders the write before the claim)."""

    def __init__(self, n_batches: int, capacity: int) -> None:
        self.n_batches = n_batches
        self.capacity = capacity
        self._map = mmap.mmap(-1, max(capacity, 1) * 3 * 8)  # MAP_SHARED | MAP_ANONYMOUS
        self.rows = np.frombuffer(self._map, dtype=np.int64).reshape(-1, 3)[:capacity]

    def piece(self, batch: int) -> tuple[int, int, int]:
        root, start, stop = self.rows[batch - self.n_batches].tolist()
        return int(root), int(start), int(stop)

    def places(self, batches: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Per batch id: its mini-batch and its item range [start, stop) there; a
        mini-batch itself is (itself, 0, 0), as the journal writes it."""
        batches = batches.astype(np.int64)
        sub = batches >= self.n_batches
        roots = batches.copy()
        starts, stops = np.zeros(len(batches), np.int64), np.zeros(len(batches), np.int64)
        rows = self.rows[batches[sub] - self.n_batches]
        roots[sub], starts[sub], stops[sub] = rows[:, 0], rows[:, 1], rows[:, 2]
        return roots, starts, stops


def merge_order(
    batches: np.ndarray, table: PieceTable | None, unsettled: set[int] | None = None
) -> np.ndarray:
    """DONE batch ids in output order: by mini-batch, then by first item (a mini-batch's
    accepted pieces in their original order). Pieces of ``unsettled`` mini-batches (a job
    stopped mid-bisection) are left out: they are not a whole mini-batch's rows."""
    if table is None or not len(batches) or int(batches.max()) < table.n_batches:
        return batches
    roots, starts, _ = table.places(batches)
    if unsettled:
        whole = (batches < table.n_batches) | ~np.isin(roots, list(unsettled))
        batches, roots, starts = batches[whole], roots[whole], starts[whole]
    return batches[np.lexsort((starts, roots))]


def slice_items(items: Any, start: int, stop: int) -> Any:
    """Items [start, stop) of a materialised mini-batch: a list of paths, or a DataFrame
    (numbered from 0 again, as any mini-batch's rows are)."""
    if hasattr(items, "iloc"):
        import pandas as pd

        part = items.iloc[start:stop]
        return part.reset_index(drop=True) if isinstance(items.index, pd.RangeIndex) else part
    return items[start:stop]


class IsolatingPlan(WrappedPlan):
    """A BatchPlan that also answers for sub-batches (ids >= n_batches), read through the
    PieceTable. What workers and the engine are given when isolation is on."""

    def __init__(self, plan: BatchPlan, table: PieceTable) -> None:
        super().__init__(plan)
        self.table = table
        self._n = plan.n_batches

    def root_of(self, batch: int) -> int:
        return batch if batch < self._n else self.table.piece(batch)[0]

    def materialise(self, batch: int) -> Any:
        if batch < self._n:
            return self.plan.materialise(batch)
        root, start, stop = self.table.piece(batch)
        return slice_items(self.plan.materialise(root), start, stop)

    def items_in(self, batch: int) -> int:
        if batch < self._n:
            return self.plan.items_in(batch)
        _, start, stop = self.table.piece(batch)
        return stop - start

    def partition_key_value(self, batch: int) -> dict[str, Any] | None:
        return self.plan.partition_key_value(self.root_of(batch))

    def describe(self, batch: int) -> str:
        if batch < self._n:
            return self.plan.describe(batch)
        return f"{self.label(batch)}, in " + self.plan.describe(self.root_of(batch))

    def label(self, batch: int) -> str:
        """How logs name a batch: a sub-batch with its items and mini-batch."""
        if batch < self._n:
            return f"mini-batch {batch}"
        root, start, stop = self.table.piece(batch)
        return f"sub-batch {batch} (items {start}..{stop - 1} of mini-batch {root})"

    def item_name(self, root: int, index: int) -> str:
        """One item of a mini-batch, as quarantine.csv names it: the file's path, or the
        row's place."""
        if self.plan.loads_data:  # a table: rows are known by their place
            place = getattr(self.plan, "row_place", None)
            where = place(root, index) if place is not None else ""
            return f"row {index} of mini-batch {root}" + (f" ({where})" if where else "")
        return str(self.plan.materialise(root)[index])


@dataclass(frozen=True)
class Quarantined:
    """One item that failed alone: quarantine.csv's row."""

    mini_batch: int
    item_index: int
    item: str
    status: str
    error: str  # the last attempt's whole error text (the CSV keeps its first line)
    log_file: str


@dataclass
class Bisected:
    """A mini-batch under bisection. Once no piece of it is left running (``settled``), the
    engine counts it from these fields."""

    batch: int
    size: int
    open: int = 0  # its pieces queued or running
    failed_at: Counter[int] = field(default_factory=Counter)  # depth -> pieces failed there
    attempts: int = 0  # charged sub-batch attempts
    items_in: int = 0  # items its accepted pieces held
    items_out: int = 0  # rows they returned
    accepted: list[int] = field(default_factory=list)  # accepted sub-batch ids (their rows
    # are dropped when it is abandoned)
    quarantined: list[Quarantined] = field(default_factory=list)
    abandoned: str | None = None  # why splitting stopped: it fails as without isolation
    status: str = ""  # how the mini-batch's own last attempt ended
    error: str = ""  # ... and its error text
    settled: bool = False  # no piece of it left running: counted


@dataclass(frozen=True)
class Decision:
    """What the engine does with a batch whose tries are spent, isolation on."""

    children: list[int]  # sub-batches to queue (their table rows are written)
    settled: Bisected | None = None  # its mini-batch, when no piece of it is left running


class Bisection:
    """The driver's bookkeeping of every bisected mini-batch; see the module docstring."""

    def __init__(self, plan: IsolatingPlan, max_quarantined: int) -> None:
        self.plan = plan
        self.table = plan.table
        self.n = plan.n_batches
        self.max_quarantined = max_quarantined
        self.roots: dict[int, Bisected] = {}
        self.depth = np.zeros(self.table.capacity, dtype=np.int16)
        self.used = 0  # sub-batch slots handed out
        self.out_of_slots = False  # the job-wide cap was reached (a warning, once)

    def failed(self, batch: int, status: str, error: str, log_file: str) -> Decision | None:
        """A batch that will not be tried again (``error``: its last attempt's). None: it
        is not isolated (a partition, an empty one, no slot left): fail it as today."""
        if batch < self.n:
            size = self.plan.items_in(batch)
            if size < 1 or self.plan.partition_key_value(batch) is not None:
                return None
            if size > 1 and not self._room(2):
                return None
            root = self.roots[batch] = Bisected(batch, size, status=status, error=error)
            root.failed_at[0] = 1
            if size == 1:
                root.quarantined.append(self._quarantine(batch, 0, status, error, log_file))
                return Decision([], self._settled(root))
            return Decision(self._split(batch, root, 0, size, 1))
        rid, start, stop = self.table.piece(batch)
        root = self.roots[rid]
        root.open -= 1
        root.attempts += 1
        if not root.status:  # a mini-batch restored mid-bisection: its pieces' failure
            root.status, root.error = status, error
        depth = int(self.depth[batch - self.n])
        root.failed_at[depth] += 1
        if root.abandoned is None and root.failed_at[depth] > self.max_quarantined:
            root.abandoned = (
                f"more than {self.max_quarantined} of its pieces failed at bisection depth "
                f"{depth} (--isolate_failures {self.max_quarantined}): it fails as a whole"
            )
        children: list[int] = []
        if root.abandoned is None:
            if stop - start == 1 and len(root.quarantined) == self.max_quarantined:
                # One more than N failing items: what it is does not depend on the order
                # the pieces ran in (nor on a resume, which restarts the depths).
                root.abandoned = (
                    f"more than {self.max_quarantined} of its items failed alone "
                    f"(--isolate_failures {self.max_quarantined}): it fails as a whole"
                )
            elif stop - start == 1:
                root.quarantined.append(self._quarantine(rid, start, status, error, log_file))
            elif self._room(2):
                children = self._split(rid, root, start, stop, depth + 1)
            else:
                root.abandoned = (
                    f"the step's {self.table.capacity} sub-batches were all used: it fails as a "
                    "whole"
                )
        return Decision(children, self._settled(root) if root.open == 0 else None)

    def accepted(
        self, batches: list[int], items_in: list[int], items_out: list[int]
    ) -> list[Bisected]:
        """Accepted sub-batches; the mini-batches that settled with them."""
        settled = []
        for batch, n_in, n_out in zip(batches, items_in, items_out, strict=True):
            rid = self.table.piece(batch)[0]
            root = self.roots[rid]
            root.open -= 1
            root.attempts += 1
            root.items_in += n_in
            root.items_out += n_out
            root.accepted.append(batch)
            if root.open == 0:
                settled.append(self._settled(root))
        return settled

    def restore(
        self, pieces: np.ndarray, items_in: np.ndarray, items_out: np.ndarray
    ) -> tuple[list[int], list[Bisected]]:
        """On resume: the journalled accepted pieces (rows of sub id, root, start, stop)
        take their slots again; the rest of each of their mini-batches (what failed, or had
        not run yet) is queued again as pieces at depth 1, bisected anew if it fails.
        Returns the pieces to queue and the mini-batches already whole."""
        if not len(pieces):
            return [], []
        self.used = int(pieces[:, 0].max()) - self.n + 1
        self.table.rows[pieces[:, 0] - self.n] = pieces[:, 1:]
        queue: list[int] = []
        settled: list[Bisected] = []
        order = np.lexsort((pieces[:, 2], pieces[:, 1]))
        by_root: dict[int, list[int]] = {}
        for i in order.tolist():
            by_root.setdefault(int(pieces[i, 1]), []).append(i)
        for rid, rows in by_root.items():
            root = self.roots[rid] = Bisected(rid, self.plan.items_in(rid))
            root.failed_at[0] = 1
            at = 0
            gaps = []
            for i in rows:
                start, stop = int(pieces[i, 2]), int(pieces[i, 3])
                if start > at:
                    gaps.append((at, start))
                at = stop
                root.accepted.append(int(pieces[i, 0]))
                root.items_in += int(items_in[i])
                root.items_out += int(items_out[i])
            if at < root.size:
                gaps.append((at, root.size))
            for start, stop in gaps:
                if not self._room(1):
                    root.abandoned = f"the step's {self.table.capacity} sub-batches were all used"
                    break
                queue.append(self._piece(rid, start, stop, 1))
                root.open += 1
            if root.open == 0:
                settled.append(self._settled(root))
        return queue, settled

    @property
    def quarantined(self) -> list[Quarantined]:
        """In mini-batch and item order (quarantine.csv's); none of an abandoned one."""
        kept = (r for r in self.roots.values() if r.abandoned is None)
        return sorted((q for r in kept for q in r.quarantined), key=_place)

    def unsettled(self) -> set[int]:
        """Mini-batches whose bisection has not ended (a job stopped by a limit): their
        accepted pieces are not a mini-batch's rows yet and stay out of the output."""
        return {r for r, root in self.roots.items() if not root.settled}

    def _room(self, pieces: int) -> bool:
        if self.used + pieces <= self.table.capacity:
            return True
        self.out_of_slots = True
        return False

    def _split(self, rid: int, root: Bisected, start: int, stop: int, depth: int) -> list[int]:
        middle = start + (stop - start) // 2
        children = [self._piece(rid, start, middle, depth), self._piece(rid, middle, stop, depth)]
        root.open += 2
        return children

    def _piece(self, rid: int, start: int, stop: int, depth: int) -> int:
        slot = self.used
        self.used += 1
        self.table.rows[slot] = (rid, start, stop)
        self.depth[slot] = depth
        return self.n + slot

    def _quarantine(self, rid: int, index: int, status: str, error: str, log: str) -> Quarantined:
        try:
            item = self.plan.item_name(rid, index)
        except Exception as exc:  # noqa: BLE001 - the input changed or vanished meanwhile
            item = f"item {index} of mini-batch {rid} ({exc})"
        return Quarantined(rid, index, item, status, error, log)

    def _settled(self, root: Bisected) -> Bisected:
        root.settled = True
        if root.abandoned is None and root.size > 1 and len(root.quarantined) * 2 > root.size:
            root.abandoned = (
                f"{len(root.quarantined)} of its {root.size} items failed alone: more than half "
                "of it, so it fails as a whole"
            )
        return root


def _place(q: Quarantined) -> tuple[int, int]:
    return q.mini_batch, q.item_index


MAX_ERROR_CHARS = 2000  # of an error's line in quarantine.csv (job_result.json has it all)
QUARANTINE_COLUMNS = ("step", "mini_batch", "item_index", "item", "status", "error", "log_file")


def write_quarantine(layout: StepLayout, step: str, items: list[Quarantined]) -> None:
    """logs/quarantine.csv: one row per quarantined item (a header only when none), in
    the order given (Bisection.quarantined: mini-batch and item order); ``parajob run
    --skip-items`` reads it back. Atomic."""

    def write(tmp: Path) -> None:
        with open(tmp, "w", newline="", encoding="utf-8", errors="backslashreplace") as f:
            out = csv.writer(f)
            out.writerow(QUARANTINE_COLUMNS)
            for q in items:
                first = error_line(q.error)[:MAX_ERROR_CHARS]  # csv reads 128 KiB a field
                row = [step, q.mini_batch, q.item_index, q.item, q.status, first, q.log_file]
                out.writerow(row)

    write_atomically(layout.quarantine_csv, write)
