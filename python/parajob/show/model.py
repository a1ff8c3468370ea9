"""What a run folder says about a run, finished or still going: read-only, lock-free.

    <run>/parajob-run.json, run_result.json, .parajob.lock (the owner's pid, read only)
    <run>/<step>/logs/job_result.json                    a step that ended
    <run>/<step>/logs/sys/job_report/settings.json       a step that started (engine)
                                  attempts_timeline.bin  its decided attempts so far
                                  workers.csv            its worker processes
    <run>/<step>/logs/sys/perf/<node>/*.csv              resource samples (show/resources.py)
        |  load_run()
        v
    RunView(steps=[StepView ...])  -->  show.text.render / show.html.render

Invariants: nothing is written, no lock is taken (flock on .parajob.lock would stop the
run's own --resume, and a reader must never slow the run down); every file may be
missing, partly written (the timeline's torn tail is dropped) or from an older parajob
(then only job_result.json is shown).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from parajob.errors import Diagnostic, SpecError
from parajob.runtime import timeline
from parajob.runtime.journal import journal_path
from parajob.runtime.layout import StepLayout
from parajob.runtime.monitor import perf_dir
from parajob.runtime.run_folder import LOCK_NAME
from parajob.show.resources import Resources
from parajob.show.resources import load as load_resources

SLOWEST = 5  # mini-batch attempts listed as the slowest


class NotARunFolder(SpecError):
    """RUN_DIR is missing or holds no parajob run."""

    def __init__(self, path: Path, why: str, hint: str = "") -> None:
        super().__init__(
            [
                Diagnostic(
                    str(path),
                    None,
                    None,
                    "",
                    why,
                    hint
                    or "give the folder a run wrote (its --run-dir, or ./runs/<pipeline>-<time>)",
                )
            ]
        )


@dataclass(frozen=True)
class AttemptRow:
    """One decided attempt, with the worker that ran it and its log files."""

    batch: int
    attempt: int
    worker: str  # node/processNNN
    process: int
    status: str
    seconds: float
    items_in: int
    logs: tuple[Path, ...]  # the worker's user logs that are not empty


@dataclass
class StepView:
    name: str
    root: Path
    kind: str = "parallel"
    status: str = "unknown"  # succeeded, failed, interrupted, cancelled, running, stopped,
    # starting (being planned) ...
    reason: str = ""
    settings: dict[str, Any] | None = None
    total_batches: int = 0
    completed_batches: int = 0
    failed_batches: int = 0
    items_in: int = 0
    items_out: int = 0
    failed_items: int = 0
    failed_attempts: int = 0
    seconds: float = 0.0
    attempts: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=timeline.RECORD))
    workers: dict[int, dict[str, str]] = field(default_factory=dict)
    failures: list[dict[str, Any]] = field(default_factory=list)
    quarantined: list[dict[str, Any]] = field(default_factory=list)  # --isolate_failures
    first_failure: str = ""  # job_result.json's: also init()'s or a crashed worker's
    program_arguments: str = ""  # task.program_arguments as run (job_result.json's)
    # Where each node ran (job_result.json's "hosts": node, host, Dask worker address).
    hosts: list[dict[str, Any]] = field(default_factory=list)
    resources: Resources = field(default_factory=Resources)

    @property
    def on_cluster(self) -> bool:
        """Whether the step ran on a Dask cluster (its nodes have Dask worker addresses)."""
        return any(h.get("address") for h in self.hosts)

    @property
    def logs(self) -> Path:
        return self.root / "logs"

    def worker_name(self, process: int) -> str:
        row = self.workers.get(process)
        return f"{row['node']}/{row['name']}" if row else f"process id {process}"

    def worker_logs(self, process: int) -> tuple[Path, ...]:
        """The worker's user log files that hold something (an empty one says nothing)."""
        row = self.workers.get(process)
        if not row:
            return ()
        layout = StepLayout(self.root)
        paths = (
            layout.user_log(kind, row["node"], row["name"])
            for kind in ("error", "stderr", "stdout", "entry_script_log")
        )
        return tuple(p for p in paths if _size(p) > 0)

    def row(self, record: np.void) -> AttemptRow:
        process = int(record["process"])
        code = int(record["status"])
        return AttemptRow(
            int(record["batch"]),
            int(record["attempt"]),
            self.worker_name(process),
            process,
            timeline.STATUSES[min(code, len(timeline.STATUSES) - 1)],
            (int(record["end_ns"]) - int(record["start_ns"])) / 1e9,
            int(record["items_in"]),
            self.worker_logs(process),
        )

    def slowest(self, n: int = SLOWEST) -> list[AttemptRow]:
        a = self.attempts
        if not len(a):
            return []
        order = np.argsort(a["start_ns"] - a["end_ns"], kind="stable")[:n]  # longest first
        return [self.row(a[i]) for i in order]

    def failed_attempt_rows(self) -> list[AttemptRow]:
        a = self.attempts
        bad = ~np.isin(a["status"], (0, 1))
        return [self.row(r) for r in a[bad]]

    @property
    def throughput(self) -> tuple[float, float, float] | None:
        """(mini-batches/s, items/s, span s) of accepted attempts, first start to last end."""
        a = self.attempts
        ok = a[np.isin(a["status"], (0, 1))]
        if not len(ok):
            return None
        span = (int(ok["end_ns"].max()) - int(a["start_ns"].min())) / 1e9
        if span <= 0:
            return None
        return len(ok) / span, float(ok["items_in"].sum()) / span, span


@dataclass
class RunView:
    run_dir: Path
    pipeline: str | None
    created: str | None
    status: str
    driver_pid: int | None  # the live process holding the run folder, if any
    steps: list[StepView]


def load_run(run_dir: Path) -> RunView:
    if not run_dir.is_dir():
        raise NotARunFolder(run_dir, f"{run_dir} is not a folder")
    record = _json(run_dir / "parajob-run.json") or {}
    steps = [_load_step(p) for p in sorted(run_dir.iterdir()) if _is_step(p)]
    if (
        not record
        and not steps
        and _is_step(run_dir)
        and (run_dir.parent / "parajob-run.json").exists()
    ):
        raise NotARunFolder(
            run_dir,
            f"{run_dir} is the folder of one step of a run",
            f"give the run's folder: parajob show {run_dir.parent}",
        )
    if not record and not steps:
        raise NotARunFolder(
            run_dir,
            f"{run_dir} holds no parajob run (no parajob-run.json, no step folder with logs/)",
        )
    pid = _live_owner(run_dir)
    for step in steps:
        if step.status == "unknown" and step.settings is None and pid is not None:
            # Its folder, no settings.json yet, a live driver: not a run of an older
            # parajob but a command step running, or a parallel step being planned
            # (its input listed and fingerprinted).
            if (step.logs / "user" / "std_log.txt").exists():
                step.kind, step.status = "command", "running"
                step.reason = "its output so far: logs/user/std_log.txt"
            else:
                step.status = "starting"
                step.reason = (
                    "the driver is planning the step (listing its input); its "
                    "settings and counts come when its workers start"
                )
            continue
        if step.status == "started":
            step.status = "running" if pid is not None else "stopped"
            if step.status == "stopped":
                step.reason = (
                    "the driver is gone before the step ended: "
                    f"`parajob run --resume {run_dir}` finishes it"
                )
                # Not "until now": until the driver last wrote (it writes the overview
                # every 5 s, the timeline and journal at its checkpoints).
                started = float((step.settings or {}).get("started", 0.0))
                if started > 0:
                    step.seconds = max(0.0, min(step.seconds, _last_write(step) - started))
    result = _json(run_dir / "run_result.json")
    names = [str(s.get("name")) for s in (result or {}).get("steps", []) if isinstance(s, dict)]
    order = {name: i for i, name in enumerate(names)}
    steps.sort(key=lambda s: (order.get(s.name, len(order)), s.name))
    if pid is not None:
        status = "running"
    elif result is not None and not any(s.status in ("stopped", "running") for s in steps):
        status = str(result.get("status", "unknown"))
    elif any(s.status == "stopped" for s in steps):
        status = "stopped"
    else:
        status = "unknown"
    return RunView(run_dir, record.get("pipeline"), record.get("created"), status, pid, steps)


def _is_step(path: Path) -> bool:
    return path.is_dir() and (path / "logs").is_dir()


def _load_step(root: Path) -> StepView:
    layout = StepLayout(root)
    view = StepView(root.name, root)
    view.settings = timeline.read_settings(timeline.settings_path(layout))
    view.attempts = timeline.read_timeline(timeline.timeline_path(layout)).copy()
    view.workers = timeline.read_workers(timeline.workers_path(layout))
    view.resources = load_resources(layout.logs)
    result = _json(layout.job_result.with_suffix(".json"))
    settings_file = timeline.settings_path(layout)
    ended = result is not None and (
        not settings_file.exists()
        or layout.job_result.with_suffix(".json").stat().st_mtime >= settings_file.stat().st_mtime
    )
    if result is not None and ended:
        for key in (
            "kind",
            "status",
            "reason",
            "total_batches",
            "completed_batches",
            "failed_batches",
            "items_in",
            "items_out",
            "failed_items",
            "failed_attempts",
            "seconds",
            "first_failure",
        ):
            if key in result:
                setattr(view, key, result[key])
        view.failures = [f for f in result.get("failures", []) if isinstance(f, dict)]
        view.quarantined = [q for q in result.get("quarantined", []) if isinstance(q, dict)]
        view.program_arguments = _arguments(result.get("settings"))
        view.hosts = [h for h in result.get("hosts", []) if isinstance(h, dict)]
        return view
    if view.settings is not None:
        view.status = "started"  # running or stopped: load_run asks the lock file's pid
        _count_so_far(view)
    return view


def _count_so_far(view: StepView) -> None:
    """Counts of a step that has not ended, from its timeline (what was decided by the
    last checkpoint, ~0.5 s ago)."""
    assert view.settings is not None
    a = view.attempts
    view.total_batches = int(view.settings.get("total_batches", 0))
    ok = np.isin(a["status"], (0, 1))
    # Sub-batches of --isolate_failures (indexes from total_batches up) are attempts, not
    # mini-batches: their mini-batch is counted once its bisection ends (job_result.json).
    whole = a["batch"] < view.total_batches
    view.completed_batches = len(np.unique(a["batch"][ok & whole]))
    view.items_in = int(a["items_in"][ok].sum())
    view.items_out = int(a["items_out"][ok].sum())
    view.failed_attempts = int((~ok).sum())
    max_retries = int(view.settings.get("limits", {}).get("max_retries", 0))
    bad, tries = np.unique(a["batch"][~ok & whole], return_counts=True)
    gone = bad[(tries > max_retries) & ~np.isin(bad, a["batch"][ok])]
    view.failed_batches = len(gone)
    view.seconds = max(0.0, _now() - float(view.settings.get("started", _now())))
    for batch in gone.tolist():
        last = a[(a["batch"] == batch) & ~ok][-1]
        row = view.row(last)
        view.failures.append(
            {
                "batch": batch,
                "attempts": int((a["batch"][~ok] == batch).sum()),
                "status": row.status,
                "error_type": "",
                "message": f"see {view.logs / 'job_error.txt'}",
                "inputs": "",
                "traceback": "",
            }
        )


def _last_write(step: StepView) -> float:
    """When the step's driver last wrote one of the files it keeps writing while it runs
    (epoch seconds; 0 when none is there)."""
    layout = StepLayout(step.root)
    paths = [
        *step.logs.glob("job_progress_overview.*.txt"),
        timeline.timeline_path(layout),
        timeline.workers_path(layout),
        timeline.settings_path(layout),
        journal_path(step.root),
        *perf_files(step.logs),
    ]
    last = 0.0
    for path in paths:
        try:
            last = max(last, path.stat().st_mtime)
        except OSError:
            continue
    return last


def perf_files(logs: Path) -> list[Path]:
    """The resource monitor's CSVs (logs/sys/perf/<node>/*.csv)."""
    return sorted(perf_dir(logs).glob("*/*.csv"))


def _arguments(settings: object) -> str:
    """job_result.json's task.program_arguments (a JSON list of words) as one line."""
    text = settings.get("task.program_arguments") if isinstance(settings, dict) else None
    try:
        words = json.loads(text) if isinstance(text, str) else None
    except ValueError:
        return ""
    return " ".join(str(w) for w in words) if isinstance(words, list) else ""


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


def _now() -> float:
    import time

    return time.time()


def _live_owner(run_dir: Path) -> int | None:
    """The pid of the process holding the run folder's lock, None when nobody holds it.
    Asked of the kernel's lock table (/proc/locks), never by taking the lock: a flock of
    ours, however short, could make the run's own `--resume` or a second claimant fail.
    Without /proc/locks: the pid written in the lock file, if that process is alive (a
    reused pid can then make a finished run look running)."""
    lock = run_dir / LOCK_NAME
    try:
        st = lock.stat()
        text = lock.read_text(encoding="utf-8").strip()
    except OSError:
        return None
    written = int(text) if text.isdigit() and int(text) > 0 else None
    holder = _flock_holder(st)
    if holder is not _UNKNOWN:
        return written if holder is not None and written is not None else holder
    if written is None:
        return None
    try:
        os.kill(written, 0)
    except ProcessLookupError:
        return None
    except PermissionError:
        pass  # alive, someone else's
    return written


_UNKNOWN = -1


def _flock_holder(st: os.stat_result) -> int | None:
    """The pid /proc/locks names for a flock on this file, None if none, _UNKNOWN when
    the table cannot be read. Its lines: "1: FLOCK ADVISORY WRITE <pid> <maj>:<min>:<ino>
    0 EOF" (major and minor in hex)."""
    try:
        table = Path("/proc/locks").read_text(encoding="ascii", errors="replace")
    except OSError:
        return _UNKNOWN
    want = (os.major(st.st_dev), os.minor(st.st_dev), st.st_ino)
    for line in table.splitlines():
        fields = line.split()
        if len(fields) < 6 or fields[1] != "FLOCK" or "->" in fields[0]:
            continue  # "->" lines are waiters, not holders
        parts = fields[5].split(":")
        try:
            key = (int(parts[0], 16), int(parts[1], 16), int(parts[2]))
            pid = int(fields[4])
        except (ValueError, IndexError):
            continue
        if key == want:
            return pid
    return None


def _json(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None
