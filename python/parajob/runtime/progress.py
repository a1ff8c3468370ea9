"""A parallel step's live progress: the terminal line, job_progress_overview.<ts>.txt and
the caller's on_progress.

    engine loop --update(tally, running)--> Progress --snapshot()--> Snapshot (counts, rate, ETA)
    engine._end_attempt --note_failure(text)--^            |
                                  +------------------------+-------------------------+
                                  v                        v                         v
                   terminal (a tty: rich Live,   overview file: one full      on_progress(
                   one line redrawn in place,    line every 5 s, the same     ProgressEvent)
                   fitted to the width each      ETA (plain text)             every 0.2 s
                   redraw; not a tty: a plain
                   line every 30 s, no control
                   characters)

Invariants:
* No thread, ever: the driver calls update() from its loop, and rich's Live runs with
  auto_refresh=False (its refresh thread is never started). Workers are forked from a
  process with no other threads (docs/design.md §7.1, fork first, then threads).
* The job never depends on the terminal: a write that fails turns the display off, the
  step goes on (terminal.write for plain lines; rich's own writes are caught here).
* One formatter (format_line) makes the terminal line, the plain lines and the overview
  lines, so the ETA the user sees is the one in the file.

Why rich (not tqdm): a tqdm bar is one counter with a rate; this line has several
counts, a failure text and a width-dependent layout, which rich renders (Live, Text
cropping, ProgressBar) from the single-threaded loop with no refresh thread. rich has no
native code and no dependencies beyond markdown-it-py and pygments.
"""

from __future__ import annotations

import contextlib
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TextIO

from parajob import terminal
from parajob.runtime.accounting import Tally
from parajob.runtime.layout import StepLayout
from parajob.runtime.options import ProgressEvent

TTY_REDRAW_S = 0.2  # a terminal line: redrawn at most 5 times a second
PLAIN_LINE_S = 30.0  # not a terminal (a pipe, a CI log): one line every 30 s, first and last
OVERVIEW_S = 5.0  # job_progress_overview.<ts>.txt: one line every 5 s
EVENT_S = 0.2  # on_progress


@dataclass(frozen=True)
class Snapshot:
    """The numbers of one progress line."""

    step: str
    total: int  # mini-batches
    settled: int  # completed or failed for good
    done: int
    failed: int  # mini-batches failed for good
    failed_attempts: int
    items_done: int  # items of accepted mini-batches
    items_failed: int
    items_total: int | None  # None: not known (a plan that does not count them)
    running: int
    elapsed_s: float
    rate: float  # mini-batches settled per second in this run (0: none yet)
    eta_s: float | None  # None: not known yet (nothing settled in this run)
    latest_failure: str  # "Type: message" of the latest failed attempt ("" when none)

    @property
    def retries(self) -> int:
        """Failed attempts that were given another try (the last try of a batch that
        failed for good was not retried)."""
        return max(0, self.failed_attempts - self.failed)


def duration(seconds: float) -> str:
    """1:05:09, 4:07, 0:03: hours only when needed."""
    s = int(round(seconds))
    h, rest = divmod(s, 3600)
    m, s = divmod(rest, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


COMPACT_BELOW = 130  # columns: short labels below this width
MIN_FAILURE = 16  # columns kept for the latest failure when there is one


def format_line(snap: Snapshot, width: int | None = None) -> str:
    """The progress line. Without ``width`` (the overview file, plain lines) every piece,
    labelled in full. With ``width`` (a terminal) the pieces that fit, most important
    first (counts, failures, ETA, rate, running, items, the latest failure, retries, ...), with
    short labels below COMPACT_BELOW columns; the latest failure gets what is left."""
    short = width is not None and width < COMPACT_BELOW
    pct = 100.0 * snap.settled / snap.total if snap.total else 100.0
    eta = ("ETA " + duration(snap.eta_s)) if snap.eta_s is not None else "ETA ?"
    items = (
        f"items {snap.items_done}/{snap.items_total}"
        if snap.items_total is not None
        else f"items {snap.items_done}"
    )
    if snap.items_failed:
        items += f" ({snap.items_failed} failed)"
    retries = f"{snap.retries} retr{'y' if snap.retries == 1 else 'ies'}"
    # (priority, text) in display order; a lower priority number is kept first.
    pieces: list[tuple[int, str]] = [
        (0, f"[{snap.step}] {snap.settled}/{snap.total}" + (" mb" if short else " mini-batches")),
        (7, f"{pct:.0f}%"),
        (1, f"{snap.failed} " + ("fail" if short else "failed")),
        (2, eta),
        (3, f"{snap.rate:.1f}/s"),
        (4, f"{snap.running} " + ("run" if short else "running")),
        (6, retries),
        (5, items),
        (8, duration(snap.elapsed_s)),
    ]
    sep = " " if short else " | "
    if width is None:
        line = sep.join(text for _, text in pieces)
        return line + (f"{sep}last failure: {snap.latest_failure}" if snap.latest_failure else "")
    failure_label = f"{sep}last: " if not short else " last:"
    reserve = MIN_FAILURE + len(failure_label) if snap.latest_failure else 0
    kept: set[int] = set()
    used = 0
    for prio, text in sorted(pieces):
        cost = len(text) + (len(sep) if kept else 0)
        budget = width - (reserve if prio > 5 else 0)  # the failure outranks priorities > 5
        if prio != 0 and used + cost > budget:
            continue
        kept.add(prio)
        used += cost
    line = sep.join(text for prio, text in pieces if prio in kept)
    room = width - len(line) - len(failure_label)
    if snap.latest_failure and room >= 8:
        failure = snap.latest_failure
        if len(failure) > room:
            failure = failure[: room - 1] + "…"
        line += failure_label + failure
    return line[:width]


def failure_line(error: str) -> str:
    """One line for an attempt's error text: a traceback's last line ("Type: message"),
    else its first non-empty line (a timeout, a signal)."""
    lines = [ln.strip() for ln in error.strip().splitlines() if ln.strip()]
    if not lines:
        return ""
    return (
        lines[-1] if lines[0].startswith(("Traceback", "mini-batch ", "sub-batch ")) else lines[0]
    )


class Progress:
    """Live progress of one step (see the module docstring). Not thread-safe: the driver
    calls update(), note_failure() and close() from its loop."""

    def __init__(
        self,
        layout: StepLayout,
        step: str,
        total: int,
        stream: TextIO | None = None,
        quiet: bool = False,
        on_progress: Callable[[ProgressEvent], object] | None = None,
        total_items: int | None = None,
    ) -> None:
        """``stream``: the terminal (default sys.stderr; none when ``quiet``); writes that
        fail are dropped. ``on_progress`` is called as often as a terminal is redrawn."""
        self._stream = None if quiet else stream if stream is not None else sys.stderr
        try:
            self._tty = bool(self._stream and self._stream.isatty())
        except (OSError, ValueError):  # a closed stream: no terminal to draw on
            self._tty = False
        self._on_progress = on_progress
        self._live: Any = None  # rich.live.Live once the first tty line is drawn
        self._console: Any = None
        stamp = time.strftime("%Y%m%d%H%M%S")
        self._file = open(layout.logs / f"job_progress_overview.{stamp}.txt", "w", encoding="utf-8")
        self._step, self._total, self._total_items = step, total, total_items
        self._start = time.monotonic()
        self._settled_at_start: int | None = None  # a resumed run's restored batches
        self._latest_failure = ""
        self._last_line = self._last_file = self._last_event = float("-inf")

    def note_failure(self, error: str) -> None:
        """An attempt failed (retried or not): its error text, shown as the latest failure."""
        self._latest_failure = failure_line(error)

    def snapshot(self, tally: Tally, running: int, now: float | None = None) -> Snapshot:
        now = time.monotonic() if now is None else now
        if self._settled_at_start is None:
            self._settled_at_start = tally.settled_batches
        elapsed = now - self._start
        settled_here = tally.settled_batches - self._settled_at_start
        rate = settled_here / elapsed if elapsed > 0 and settled_here > 0 else 0.0
        remaining = self._total - tally.settled_batches
        eta = remaining / rate if rate > 0 else (0.0 if remaining == 0 else None)
        return Snapshot(
            self._step,
            self._total,
            tally.settled_batches,
            tally.done_batches,
            tally.failed_batches,
            tally.failed_attempts,
            tally.items_in,
            tally.failed_items,
            self._total_items,
            running,
            elapsed,
            rate,
            eta,
            self._latest_failure,
        )

    def update(self, tally: Tally, running: Callable[[], int], force: bool = False) -> None:
        """Redraw if due. Called on every driver wake-up, so it is cheap when not due."""
        now = time.monotonic()
        event_due = self._on_progress is not None and (force or now - self._last_event >= EVENT_S)
        file_due = force or now - self._last_file >= OVERVIEW_S
        line_due = self._stream is not None and (
            force or now - self._last_line >= (TTY_REDRAW_S if self._tty else PLAIN_LINE_S)
        )
        if not (event_due or file_due or line_due):
            return
        snap = self.snapshot(tally, running(), now)
        if event_due:
            self._last_event = now
            self._call_back(
                ProgressEvent(
                    self._step,
                    self._total,
                    tally.settled_batches,
                    tally.done_batches,
                    tally.failed_batches,
                    tally.failed_attempts,
                    tally.items_in,
                    tally.items_out,
                    tally.failed_items,
                    snap.running,
                    snap.elapsed_s,
                    final=force,
                )
            )
        if file_due:
            self._file.write(f"{time.strftime('%Y-%m-%d %H:%M:%S')} {format_line(snap)}\n")
            self._file.flush()
            self._last_file = now
        if line_due:
            self._last_line = now
            if self._tty:
                self._draw(snap)
            elif not terminal.write(self._stream, format_line(snap) + "\n"):
                self._stream = None  # gone (`| head -1`): the job goes on without it

    def _draw(self, snap: Snapshot) -> None:
        """One line, redrawn in place by rich, fitted to the terminal's width now (it may
        have been resized since the last redraw)."""
        try:
            if self._live is None:
                from rich.console import Console
                from rich.live import Live

                self._console = Console(file=self._stream, highlight=False, soft_wrap=False)
                # auto_refresh=False: no refresh thread (fork safety); no redirection of
                # sys.stdout/stderr, which forked workers would inherit.
                self._live = Live(
                    console=self._console,
                    auto_refresh=False,
                    transient=False,
                    redirect_stdout=False,
                    redirect_stderr=False,
                )
                self._live.start()
                # Live hides the cursor until stop(): a driver killed by SIGKILL would leave
                # the user's terminal without one.
                self._console.show_cursor(True)
                terminal.live_line(self._stream)  # warnings meanwhile: a line of their own
            self._live.update(self._renderable(snap, self._console.width), refresh=True)
        except (OSError, ValueError):  # the terminal went away: no more drawing
            terminal.live_line(None)
            self._stream, self._tty = None, False

    @staticmethod
    def _renderable(snap: Snapshot, width: int) -> Any:
        from rich.progress_bar import ProgressBar
        from rich.table import Table
        from rich.text import Text

        width = max(20, width - 1)  # never the last column: some terminals wrap there
        bar_width = min(25, width // 8) if width >= 140 else 0  # counts before the bar
        text = Text(
            format_line(snap, width - (bar_width + 1 if bar_width else 0)),
            no_wrap=True,
            overflow="ellipsis",
        )
        if not bar_width:
            return text
        grid = Table.grid(padding=(0, 1))
        grid.add_column(width=bar_width, no_wrap=True)
        grid.add_column(no_wrap=True, overflow="ellipsis")
        # rich's default "complete" colour is a red (rgb(249,38,114)): a healthy step's bar
        # looked failed. Green while nothing failed for good, red once a mini-batch has.
        colour = "red" if snap.failed else "green"
        grid.add_row(
            ProgressBar(
                total=max(snap.total, 1),
                completed=snap.settled,
                width=bar_width,
                complete_style=colour,
                finished_style=colour,
            ),
            text,
        )
        return grid

    def _call_back(self, event: ProgressEvent) -> None:
        """The caller's on_progress. One that raises is reported once and not called again:
        the job's result does not depend on a progress display."""
        assert self._on_progress is not None
        try:
            self._on_progress(event)
        except Exception as exc:  # noqa: BLE001 - the caller's code
            self._on_progress = None
            terminal.echo(
                f"parajob: warning: on_progress raised {type(exc).__name__}: {exc}; "
                "it is not called again for this step",
                err=True,
            )

    def close(self) -> None:
        if self._live is not None:
            terminal.live_line(None)
            with contextlib.suppress(OSError, ValueError):
                self._live.stop()  # leaves the last line drawn, cursor on the next line
            self._live = None
        self._file.close()
