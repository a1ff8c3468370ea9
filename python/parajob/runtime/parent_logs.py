"""``--copy_logs_to_parent True``: a parallel step's result and progress, copied to the
pipeline run folder, as Azure copies them to the parent pipeline job.

    <run>/<step>/logs/job_result.txt                    --copy--> <run>/logs/<step>/
    <run>/<step>/logs/job_result.json                   --copy--> <run>/logs/<step>/
    <run>/<step>/logs/job_progress_overview.<ts>.txt    --copy--> <run>/logs/<step>/

Called by the driver once the step has ended (its job_result files are written), whatever
the outcome: a failed or interrupted step is what a user most wants to see from the top.
Invariants: each copy is atomic (a temporary file renamed over the target), so a reader of
the parent folder never sees half a file; a copy that fails is a warning on the terminal,
never a change of the step's outcome (the originals stand).
"""

from __future__ import annotations

import shutil
from functools import partial
from pathlib import Path

from parajob import terminal
from parajob.runtime.layout import StepLayout
from parajob.runtime.spool import write_atomically

__all__ = ["copy_logs_to_parent", "parent_logs_dir"]


def _copy(source: Path, tmp: Path) -> None:
    shutil.copyfile(source, tmp)


def parent_logs_dir(run_dir: Path, step: str) -> Path:
    return run_dir / "logs" / step


def copy_logs_to_parent(layout: StepLayout, run_dir: Path) -> list[Path]:
    """Copy the step's result files and progress overviews; returns the copies made."""
    target = parent_logs_dir(run_dir, layout.root.name)
    sources = [
        layout.job_result,
        layout.job_result.with_suffix(".json"),
        *sorted(layout.logs.glob("job_progress_overview.*.txt")),
    ]
    copied: list[Path] = []
    try:
        target.mkdir(parents=True, exist_ok=True)
        for source in sources:
            if not source.is_file():
                continue  # e.g. a disk too full for job_result.json: said when it happened
            dest = target / source.name
            write_atomically(dest, partial(_copy, source))
            copied.append(dest)
    except OSError as exc:
        terminal.echo(
            f"parajob: warning: --copy_logs_to_parent: could not copy the logs of "
            f"step {layout.root.name} to {target}: {exc.strerror or exc}",
            err=True,
        )
    return copied
