"""``--skip-items QUARANTINE_CSV``: run a step without the items an earlier run
quarantined (runtime/isolation.py writes the file).

    quarantine.csv rows of this step --find()--> {mini-batch: item positions}
        files: by path (where it was, else anywhere in this input)
        tables: by (mini-batch, row), if that row still is the one the file names
    --> SkippingPlan(plan): materialise() leaves them out, items_in() counts without them

A listed item this input does not have is said once (a warning), not an error: the file
may come from a run over another version of the input.
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import numpy as np

from parajob import terminal
from parajob.data.batch_plan import BatchPlan, WrappedPlan
from parajob.data.fingerprints import blake2b  # not hashlib: see there
from parajob.errors import Diagnostic, SpecError
from parajob.runtime.isolation import QUARANTINE_COLUMNS, IsolatingPlan, PieceTable

NEEDED = ("step", "mini_batch", "item_index", "item")


def skip_list_error(path: Path, message: str, line: int | None = None) -> SpecError:
    """Bad input about a --skip-items file (exit 2), with the fix."""
    hint = (
        "give the logs/quarantine.csv of an earlier run's step (columns "
        + ",".join(QUARANTINE_COLUMNS)
        + ")"
    )
    return SpecError([Diagnostic(str(path), line, None, "--skip-items", message, hint)])


def read_skip_list(path: Path) -> dict[str, list[tuple[int, int, str]]]:
    """step -> (mini-batch, item position, item) of each row. SpecError (exit 2) for a
    file that is not a quarantine.csv."""

    def bad(message: str, line: int | None = None) -> SpecError:
        return skip_list_error(path, message, line)

    try:
        with open(path, newline="", encoding="utf-8", errors="surrogateescape") as f:
            rows = list(csv.reader(f))
    except OSError as exc:
        raise bad(f"cannot be read: {exc.strerror or exc}") from None
    except csv.Error as exc:  # a field over csv's limit (128 KiB), a stray quote
        raise bad(f"is not a CSV file parajob can read: {exc}") from None
    if not rows or any(c not in rows[0] for c in NEEDED):
        raise bad(f"is not a quarantine list: its header lacks {', '.join(NEEDED)}", 1)
    at = [rows[0].index(c) for c in NEEDED]
    steps: dict[str, list[tuple[int, int, str]]] = {}
    for line, row in enumerate(rows[1:], start=2):
        if not row:
            continue
        try:
            step, batch, index, item = (row[i] for i in at)
            steps.setdefault(step, []).append((int(batch), int(index), item))
        except (IndexError, ValueError):
            raise bad("a row without a whole mini_batch and item_index", line) from None
    return steps


def skip_digest(rows: list[tuple[int, int, str]]) -> str:
    """What the journal's fingerprint records of a step's skip list: a resume must skip
    the same items (a mini-batch accepted without them must not be mixed with others)."""
    text = "\n".join(f"{b},{i},{item}" for b, i, item in sorted(rows))
    return blake2b(text.encode("utf-8", "surrogateescape"), digest_size=16).hexdigest()


def find(plan: BatchPlan, rows: list[tuple[int, int, str]], step: str) -> dict[int, set[int]]:
    """The positions to leave out, per mini-batch, of the rows this input still has."""
    names = IsolatingPlan(plan, PieceTable(plan.n_batches, 0))
    skip: dict[int, set[int]] = {}
    missing: list[str] = []
    everywhere: dict[str, tuple[int, int]] | None = None
    for batch, index, item in rows:
        if 0 <= batch < plan.n_batches and 0 <= index < plan.items_in(batch):
            if names.item_name(batch, index) == item:
                skip.setdefault(batch, set()).add(index)
                continue
        if plan.loads_data:  # rows are known by their place only
            missing.append(item)
            continue
        if everywhere is None:  # a file that moved to another mini-batch: by its path
            everywhere = {
                str(p): (b, i)
                for b in range(plan.n_batches)
                for i, p in enumerate(plan.materialise(b))
            }
        place = everywhere.get(item)
        if place is None:
            missing.append(item)
        else:
            skip.setdefault(place[0], set()).add(place[1])
    if missing:
        terminal.echo(
            f"parajob: warning: step {step}: {len(missing)} item(s) of --skip-items are not "
            f"in this input (the first: {missing[0]}); the others are left out",
            err=True,
        )
    return skip


class SkippingPlan(WrappedPlan):
    """A BatchPlan without some items of some mini-batches (same mini-batches, fewer
    items in them)."""

    def __init__(self, plan: BatchPlan, skip: dict[int, set[int]]) -> None:
        super().__init__(plan)
        self.skip = {b: np.array(sorted(s), dtype=np.int64) for b, s in skip.items()}
        self._n_items = plan.n_items - sum(len(s) for s in skip.values())

    @property
    def n_items(self) -> int:
        return self._n_items

    def materialise(self, batch: int) -> Any:
        items = self.plan.materialise(batch)
        drop = self.skip.get(batch)
        if drop is None:
            return items
        keep = np.setdiff1d(np.arange(len(items)), drop)
        if hasattr(items, "iloc"):
            return items.iloc[keep].reset_index(drop=True)
        return [items[i] for i in keep.tolist()]

    def items_in(self, batch: int) -> int:
        drop = self.skip.get(batch)
        return self.plan.items_in(batch) - (0 if drop is None else len(drop))

    def describe(self, batch: int) -> str:
        text = self.plan.describe(batch)
        drop = self.skip.get(batch)
        return text if drop is None else f"{text}\n  ({len(drop)} item(s) left out: --skip-items)"
