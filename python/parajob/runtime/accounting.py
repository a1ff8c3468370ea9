"""Counting outcomes and checking the job's limits as results arrive (docs/contract.md
§4.3, §4.4)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Limits:
    """The limits of docs/contract.md §4.4, resolved from the step and its program arguments."""

    max_retries: int = 2
    run_timeout_s: float = 60.0
    load_timeout_s: float = 30.0  # --task_overhead_timeout: materialising a mini-batch
    init_timeout_s: float = 600.0
    first_task_creation_timeout_s: float = 600.0
    progress_update_timeout_s: float = 3 * (60.0 + 30.0)
    error_threshold: int = -1
    mini_batch_error_threshold: int = -1
    allowed_failed_percent: float = 100.0
    max_init_failures_per_node: int = 3  # times workers per node, see Tally.init_failed
    append_row: bool = False


@dataclass
class Tally:
    """Running counts of one step. Mutated only by the driver."""

    total_batches: int
    done_batches: int = 0  # accepted (DONE), short returns included
    failed_batches: int = 0  # failed for good, plus short returns when error_threshold != -1
    settled_batches: int = 0  # DONE or failed for good: nothing more will happen to them
    failed_attempts: int = 0  # every errored / timed-out / crashed attempt
    items_in: int = 0  # items of settled batches
    items_out: int = 0  # items returned by accepted attempts
    failed_items: int = 0
    init_failures: int = 0  # worker processes that died in (or failed) init()
    start_failures: int = 0  # worker processes that died before reaching init()
    first_failed_batch: int | None = None

    def accept(self, batch: int, items_in: int, items_out: int, limits: Limits) -> None:
        """A DONE attempt: keep its results; a short return counts its missing items."""
        self.done_batches += 1
        self.settled_batches += 1
        self.items_in += items_in
        self.items_out += items_out
        missing = max(items_in - items_out, 0)
        if missing:
            self.failed_items += missing
            # docs/contract.md §4.3: a short return also fails the mini-batch, unless errors
            # are ignored.
            if limits.error_threshold != -1:
                self._fail_batch(batch)

    def accept_many(
        self, batches: np.ndarray, items_in: np.ndarray, items_out: np.ndarray, limits: Limits
    ) -> None:
        """accept() for many DONE attempts at once (numpy arrays of equal length)."""
        self.done_batches += len(batches)
        self.settled_batches += len(batches)
        self.items_in += int(items_in.sum())
        self.items_out += int(items_out.sum())
        short = items_out < items_in
        if short.any():
            self.failed_items += int((items_in[short] - items_out[short]).sum())
            if limits.error_threshold != -1:
                for batch in batches[short].tolist():
                    self._fail_batch(int(batch))

    def fail_for_good(self, batch: int, items_in: int) -> None:
        self.settled_batches += 1
        self.items_in += items_in
        self.failed_items += items_in
        self._fail_batch(batch)

    def settle_isolated(
        self,
        batch: int,
        size: int,
        pieces_in: int,
        items_out: int,
        quarantined: int,
        abandoned: bool,
        limits: Limits,
    ) -> None:
        """A bisected mini-batch (runtime/isolation.py) with no piece left running. Its
        quarantined items are failed items; it is a failed mini-batch iff it ends with one
        (or a short return, errors not ignored); abandoned: failed as without isolation."""
        self.settled_batches += 1
        self.items_in += size
        if abandoned:
            self.failed_items += size
            self._fail_batch(batch)
            return
        self.items_out += items_out
        short = max(pieces_in - items_out, 0)
        self.failed_items += quarantined + short
        if quarantined:
            self._fail_batch(batch)
            return
        self.done_batches += 1  # as accept(): a short return is completed, and failed too
        if short and limits.error_threshold != -1:
            self._fail_batch(batch)

    def _fail_batch(self, batch: int) -> None:
        self.failed_batches += 1
        if self.first_failed_batch is None:
            self.first_failed_batch = batch

    @property
    def finished(self) -> bool:
        return self.settled_batches >= self.total_batches

    def exceeded(self, limits: Limits, all_scheduled: bool, workers_per_node: int) -> str | None:
        """The reason the job must stop now, or None while it may go on."""
        if limits.error_threshold != -1 and self.failed_items > limits.error_threshold:
            return (
                f"{self.failed_items} failed items exceed error_threshold {limits.error_threshold}"
            )
        if (
            limits.mini_batch_error_threshold != -1
            and self.failed_batches > limits.mini_batch_error_threshold
        ):
            return (
                f"{self.failed_batches} failed mini-batches exceed "
                f"mini_batch_error_threshold {limits.mini_batch_error_threshold}"
            )
        if all_scheduled and self.total_batches and limits.allowed_failed_percent < 100:
            percent = 100.0 * self.failed_batches / self.total_batches
            if percent > limits.allowed_failed_percent:
                return (
                    f"{percent:.1f}% of mini-batches failed, more than "
                    f"allowed_failed_percent {limits.allowed_failed_percent:g}"
                )
        if self.init_failures >= limits.max_init_failures_per_node * workers_per_node:
            return (
                f"init() failed {self.init_failures} times (the limit is "
                f"{limits.max_init_failures_per_node} x {workers_per_node} workers per node); "
                "see logs/user/error/"
            )
        if self.start_failures >= limits.max_init_failures_per_node * workers_per_node:
            return (
                f"worker processes died {self.start_failures} times while starting, before "
                f"init() (the limit is {limits.max_init_failures_per_node} x "
                f"{workers_per_node} workers per node); see logs/user/stderr/"
            )
        if self.finished and limits.append_row and self.items_out == 0 and self.total_batches:
            return "append_row is on but run() returned no item for any mini-batch"
        return None
