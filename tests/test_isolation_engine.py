"""Poison-item isolation in the engine alone (runtime/isolation.py), driven by the scripted
fake executor of test_engine.py: workers that fail any attempt holding a poison item.

    Engine(isolation=Bisection) --> region (n + capacity slots) --> PoisonExecutor
        claim -> the attempt's items (IsolatingPlan) -> error if a poison is among them

Also the journal's piece records, the merge order, and --skip-items' plan.
"""

from __future__ import annotations

import math
import struct
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from test_engine import FakeExecutor, run_engine

from parajob import _core
from parajob.errors import SpecError
from parajob.executors.base import Event, ExitStatus, WorkerDied
from parajob.runtime import shm_view
from parajob.runtime.accounting import Limits
from parajob.runtime.engine import EngineResult
from parajob.runtime.isolation import (
    Bisection,
    IsolatingPlan,
    PieceTable,
    merge_order,
    slice_items,
)
from parajob.runtime.journal import (
    MAGIC,
    RECORD,
    Accepted,
    journal_path,
    journal_start,
    read_journal,
)
from parajob.runtime.layout import StepLayout
from parajob.runtime.skip_items import SkippingPlan, find, read_skip_list

S = _core.BatchState
SIZE = 64


class ItemsPlan:
    """n mini-batches of ``size`` items each; item i of batch b is b * size + i."""

    loads_data = False

    def __init__(self, n: int, size: int = SIZE, partitioned: bool = False) -> None:
        self.n_batches, self.n_items, self.size = n, n * size, size
        self.partitioned = partitioned

    def items_in(self, batch: int) -> int:
        return self.size

    def materialise(self, batch: int) -> list[str]:
        return [str(batch * self.size + i) for i in range(self.size)]

    def partition_key_value(self, batch: int) -> dict[str, Any] | None:
        return {"key": batch} if self.partitioned else None

    def describe(self, batch: int) -> str:
        return f"mini-batch {batch}"

    def fingerprints(self) -> np.ndarray:
        return np.zeros((self.n_batches, 16), dtype=np.uint8)


class PoisonExecutor(FakeExecutor):
    """Every worker claims, materialises through the plan and fails any attempt that holds
    a poison item (``everything``: every attempt)."""

    plan: IsolatingPlan
    poison: frozenset[str] = frozenset()
    everything: bool = False

    def default_step(self) -> list[Event]:
        events: list[Event] = []
        for slot in list(self.live):
            batch, attempt = self.claim(slot)
            if batch == -1:
                self.region.set_worker_state(slot, _core.WorkerState.EXITED)
                died = self.die(self.live[slot])
                events.append(WorkerDied(died.worker, ExitStatus(0, None, 0), died.state))
                continue
            if batch < 0:
                continue
            items = self.plan.materialise(batch)
            writer = self.live[slot].writer
            assert writer is not None
            if self.everything or self.poison & set(items):
                error = b"Traceback (most recent call last):\nValueError: poison\n"
                writer.add(batch, attempt, False, error, len(items), 0, shm_view.ERROR_RAISED, 0.0)
            else:
                rows = "".join(f"{item}\n" for item in items).encode()
                writer.add(batch, attempt, True, rows, len(items), len(items), 0, 1.0)
        return events


def run_isolated(
    tmp_path: Path,
    plan: ItemsPlan,
    poison: set[int],
    *,
    n_quarantined: int = 3,
    everything: bool = False,
    capacity: int = 1024,
    restored: Accepted | None = None,
    max_retries: int = 1,
    limits: Limits | None = None,
) -> tuple[EngineResult, _core.DispatchRegion, Bisection, StepLayout]:
    """test_engine.run_engine with a PoisonExecutor, the plan behind an IsolatingPlan and
    ``capacity`` sub-batch slots."""
    isolating = IsolatingPlan(plan, PieceTable(plan.n_batches, capacity))
    bisection = Bisection(isolating, n_quarantined)

    def poisoned(region: _core.DispatchRegion, layout: StepLayout) -> FakeExecutor:
        fake = PoisonExecutor(region, layout, [])
        fake.plan, fake.everything = isolating, everything
        fake.poison = frozenset(map(str, poison))
        return fake

    ran = run_engine(
        tmp_path,
        plan.n_batches,
        [],
        workers=2,
        limits=limits or Limits(max_retries=max_retries),
        restored=restored,
        plan=isolating,
        extra_slots=capacity,
        executor=poisoned,
        isolation=bisection,
    )
    return ran.result, ran.region, bisection, ran.layout


def output_items(
    region: _core.DispatchRegion, isolating: IsolatingPlan, unsettled: set[int] | None = None
) -> list[str]:
    """What the merge writes: the DONE slots in merge order, each one's items."""
    state, _, _ = shm_view.unpack_states(shm_view.batch_slots(region)["word"])
    done = merge_order((state == int(S.DONE)).nonzero()[0], isolating.table, unsettled)
    return [item for b in done.tolist() for item in isolating.materialise(b)]


def sub_attempts(layout: StepLayout, n_batches: int) -> int:
    rows = layout.processed_csv.read_text(encoding="utf-8").splitlines()[1:]
    return sum(1 for row in rows if int(row.split(",")[0]) >= n_batches)


@pytest.mark.parametrize("poison", [{70}, {64, 127}, {65, 90, 100}, {64 + 31, 64 + 32}])
def test_poison_items_are_found_and_the_rest_is_kept_in_order(
    tmp_path: Path, poison: set[int]
) -> None:
    plan = ItemsPlan(3)
    result, region, bisection, layout = run_isolated(tmp_path, plan, poison, n_quarantined=3)
    assert sorted(int(q.item) for q in result.quarantined) == sorted(poison)
    assert {q.mini_batch for q in result.quarantined} == {1}
    assert [q.item_index for q in result.quarantined] == sorted(p - 64 for p in poison)
    kept = [str(i) for i in range(plan.n_items) if i not in poison]
    assert output_items(region, bisection.plan) == kept
    t = result.tally
    assert (t.done_batches, t.failed_batches, t.settled_batches) == (2, 1, 3)
    assert (t.items_in, t.items_out, t.failed_items) == (192, 192 - len(poison), len(poison))
    budget = 2 * 3 * math.ceil(math.log2(SIZE))
    assert sub_attempts(layout, plan.n_batches) <= budget
    assert result.stop_reason is None
    (failure,) = result.failures
    assert failure.batch == 1 and failure.status == "quarantined"


def test_one_poison_costs_two_attempts_per_level(tmp_path: Path) -> None:
    plan = ItemsPlan(1)
    _, _, _, layout = run_isolated(tmp_path, plan, {17}, n_quarantined=1)
    assert sub_attempts(layout, 1) == 2 * int(math.log2(SIZE))


def test_a_script_failing_on_everything_stops_within_the_budget(tmp_path: Path) -> None:
    plan = ItemsPlan(2)
    result, region, bisection, layout = run_isolated(
        tmp_path, plan, set(), n_quarantined=2, everything=True
    )
    t = result.tally
    assert (t.done_batches, t.failed_batches, t.failed_items, t.items_out) == (0, 2, 128, 0)
    assert result.quarantined == [] and output_items(region, bisection.plan) == []
    assert sub_attempts(layout, 2) <= 2 * (2 * 2 * math.ceil(math.log2(SIZE)))
    assert [(f.status, f.error_type) for f in result.failures] == [("raised", "ValueError")] * 2
    assert result.first_failure is not None and "fails as a whole" in result.first_failure


def test_more_poison_than_allowed_fails_the_mini_batch_whole(tmp_path: Path) -> None:
    """Pieces accepted before the bisection stopped leave the output and the journal."""
    plan = ItemsPlan(1)
    poison = {3, 20, 40, 60}  # one per quarter: 4 failing pieces at depth 2 > 3
    result, region, bisection, layout = run_isolated(tmp_path, plan, poison, n_quarantined=3)
    t = result.tally
    assert (t.done_batches, t.failed_batches, t.failed_items) == (0, 1, SIZE)
    assert output_items(region, bisection.plan) == [] and result.quarantined == []
    journal = read_journal(journal_path(layout.root))
    assert journal is not None and len(journal.accepted) == 0


def test_a_mini_batch_of_one_item_is_quarantined_unsplit(tmp_path: Path) -> None:
    plan = ItemsPlan(3, size=1)
    result, region, bisection, layout = run_isolated(tmp_path, plan, {1}, n_quarantined=1)
    assert [(q.mini_batch, q.item_index, q.item) for q in result.quarantined] == [(1, 0, "1")]
    assert sub_attempts(layout, 3) == 0
    assert output_items(region, bisection.plan) == ["0", "2"]
    assert (result.tally.failed_batches, result.tally.failed_items) == (1, 1)


def test_partitions_are_never_split(tmp_path: Path) -> None:
    plan = ItemsPlan(2, partitioned=True)
    result, _, _, layout = run_isolated(tmp_path, plan, {5}, n_quarantined=2)
    assert result.quarantined == [] and sub_attempts(layout, 2) == 0
    assert (result.tally.failed_batches, result.tally.failed_items) == (1, SIZE)


def test_no_sub_batch_left_fails_as_without_isolation(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    plan = ItemsPlan(2)
    # One poison needs 12 pieces: 6 run out half-way.
    result, region, bisection, _ = run_isolated(tmp_path, plan, {5}, n_quarantined=1, capacity=6)
    assert result.quarantined == []
    assert (result.tally.failed_batches, result.tally.failed_items) == (1, SIZE)
    assert output_items(region, bisection.plan) == plan.materialise(1)
    assert result.first_failure is not None and "sub-batches were all used" in result.first_failure
    assert "all 6 sub-batches of --isolate_failures are used" in capsys.readouterr().err
    # Exactly enough room: isolated.
    result, region, bisection, _ = run_isolated(
        tmp_path / "b", plan, {5}, n_quarantined=1, capacity=12
    )
    assert [q.item for q in result.quarantined] == ["5"]


def test_resume_keeps_the_journalled_pieces_and_bisects_the_rest(tmp_path: Path) -> None:
    plan = ItemsPlan(2)
    poison = {10, 100}
    _, _, _, first = run_isolated(tmp_path / "a", plan, poison)
    journal = read_journal(journal_path(first.root))
    assert journal is not None
    pieces = journal.accepted.pieces()
    assert len(pieces) and set(pieces[:, 1].tolist()) == {0, 1}
    # A driver killed mid-bisection: it had journalled the whole mini-batches and the first
    # few pieces only.
    keep = journal.accepted.select(journal.accepted.batch < 8)
    assert 0 < len(keep.pieces()) < len(pieces)
    folder = tmp_path / "a"  # resume in place: the spools are those of the first run
    result, region, bisection, layout = run_isolated(folder, plan, poison, restored=keep)
    kept = [str(i) for i in range(plan.n_items) if i not in poison]
    assert output_items(region, bisection.plan) == kept
    assert sorted(int(q.item) for q in result.quarantined) == sorted(poison)
    t = result.tally
    assert (t.settled_batches, t.failed_batches, t.failed_items) == (2, 2, 2)
    assert t.items_in == plan.n_items


def test_more_failing_items_than_allowed_fail_whole_whatever_the_order(tmp_path: Path) -> None:
    """Three poisons with N = 2 in a 6-item mini-batch: no depth has three failing pieces,
    yet a third item failing alone fails the mini-batch whole."""
    plan = ItemsPlan(2, size=6)
    result, region, bisection, _ = run_isolated(tmp_path, plan, {0, 1, 2}, n_quarantined=2)
    assert result.quarantined == []
    assert (result.tally.failed_batches, result.tally.failed_items) == (1, 6)
    assert output_items(region, bisection.plan) == plan.materialise(1)


def test_a_resume_mid_bisection_fails_whole_what_the_uninterrupted_run_did(
    tmp_path: Path,
) -> None:
    """The resume restarts the depths (its gaps are queued at depth 1): the cap on the
    items quarantined still fails the same mini-batch whole."""
    plan = ItemsPlan(1)
    poison = {0, 1, 63}
    reference, _, _, _ = run_isolated(tmp_path / "ref", plan, poison, n_quarantined=2)
    assert reference.tally.failed_items == SIZE and reference.quarantined == []
    # Killed once piece [8, 16) had been accepted: its record is all the journal has.
    one = np.array([1], dtype=np.uint64)
    restored = Accepted(
        one, one * 0, one, one * 0, one * 0, one * 8, one * 8, one * 0, one * 8, one * 16
    )
    result, region, bisection, _ = run_isolated(
        tmp_path / "resumed", plan, poison, n_quarantined=2, restored=restored
    )
    assert result.quarantined == []
    assert (result.tally.failed_batches, result.tally.failed_items) == (1, SIZE)
    assert output_items(region, bisection.plan) == []


# ---- the journal, the merge order, slicing ---------------------------------------------


def _record(kind: int, batch: int, attempt: int = 0, offset: int = 0, length: int = 0) -> bytes:
    return RECORD.pack(MAGIC, kind, batch, attempt, 1, 0, offset, length, 1, 1)


def test_journal_piece_records_abandon_and_whole_acceptance(tmp_path: Path) -> None:
    path = tmp_path / "journal.bin"
    head = journal_start(b"", 3, 30)
    body = b"".join(
        [
            _record(2, 3, attempt=0, offset=0, length=5),  # piece 3 = batch 0 [0, 5)
            _record(1, 3),
            _record(1, 4),  # a sub-batch record without its piece: torn, ignored
            _record(2, 5, attempt=1, offset=5, length=10),
            _record(1, 5),
            _record(3, 1),  # batch 1 abandoned: piece 5 no longer counts
            _record(2, 6, attempt=2, offset=0, length=5),
            _record(1, 6),
            _record(1, 2),  # batch 2 accepted whole afterwards: piece 6 is dropped
        ]
    )
    path.write_bytes(head + body)
    journal = read_journal(path)
    assert journal is not None
    a = journal.accepted
    assert sorted(a.batch.tolist()) == [2, 3]
    assert a.pieces().tolist() == [[3, 0, 0, 5]]
    assert sorted(a.roots().tolist()) == [0, 2]


def test_rerun_changed_drops_pieces_that_a_grown_plan_reaches() -> None:
    """Sub-batch ids are slots after the plan's mini-batches: when a changed input has
    more mini-batches, a piece id that is now a mini-batch's is dropped (job._kept)."""
    from parajob.runtime.job import _kept

    u = np.uint64
    accepted = Accepted(
        np.array([0, 2, 9], u),  # mini-batch 0; pieces 2 and 9 (of a 2-batch plan)
        *(np.zeros(3, u) for _ in range(6)),
        root=np.array([0, 1, 1], u),
        start=np.array([0, 0, 32], u),
        stop=np.array([0, 32, 64], u),
    )
    kept = _kept(accepted, np.ones(6, dtype=bool))  # now 6 mini-batches, all unchanged
    assert kept.batch.tolist() == [0, 9] and kept.pieces().tolist() == [[9, 1, 32, 64]]


def test_merge_order_puts_pieces_in_their_mini_batch_place() -> None:
    table = PieceTable(3, 4)
    table.rows[:3] = [(1, 32, 64), (1, 0, 16), (1, 16, 32)]
    order = merge_order(np.array([0, 2, 3, 4, 5]), table)
    assert order.tolist() == [0, 4, 5, 3, 2]
    assert merge_order(np.array([0, 2, 3, 4, 5]), table, {1}).tolist() == [0, 2]
    assert merge_order(np.array([2, 0, 1]), None).tolist() == [2, 0, 1]


def test_a_table_piece_is_numbered_from_zero() -> None:
    frame = pd.DataFrame({"v": range(10)})
    part = slice_items(frame, 4, 7)
    assert part["v"].tolist() == [4, 5, 6] and part.index.tolist() == [0, 1, 2]
    assert slice_items(["a", "b", "c"], 1, 2) == ["b"]


# ---- --skip-items ----------------------------------------------------------------------


def test_skip_items_leaves_the_listed_files_out(tmp_path: Path) -> None:
    listing = tmp_path / "quarantine.csv"
    listing.write_text(
        "step,mini_batch,item_index,item,status,error,log_file\n"
        "score,1,6,70,raised,x,log\n"
        "score,0,3,130,raised,x,log\n"  # moved: found by its name in batch 2
        "score,0,0,9999,raised,x,log\n"  # not in this input: warned, ignored
        "other,0,0,0,raised,x,log\n",
        encoding="utf-8",
    )
    rows = read_skip_list(listing)
    assert set(rows) == {"score", "other"}
    plan = ItemsPlan(3)
    skipping = SkippingPlan(plan, find(plan, rows["score"], "score"))
    assert skipping.items_in(1) == SIZE - 1 and "70" not in skipping.materialise(1)
    assert skipping.items_in(2) == SIZE - 1 and "130" not in skipping.materialise(2)
    assert skipping.materialise(0) == plan.materialise(0)
    assert skipping.n_items == plan.n_items - 2


def test_skip_items_refuses_a_file_that_is_no_quarantine_list(tmp_path: Path) -> None:
    listing = tmp_path / "list.csv"
    listing.write_text("path\n/a\n", encoding="utf-8")
    with pytest.raises(SpecError, match="header lacks step, mini_batch, item_index, item"):
        read_skip_list(listing)
    listing.write_text("step,mini_batch,item_index,item\ns,one,0,x\n", encoding="utf-8")
    with pytest.raises(SpecError, match="whole mini_batch and item_index"):
        read_skip_list(listing)


def test_journal_record_layout_unchanged() -> None:
    assert RECORD.size == 56 and struct.calcsize("<4sIIIIIQQQQ") == 56
