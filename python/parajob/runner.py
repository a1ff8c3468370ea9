"""Running a whole pipeline: its steps in order, stopping at the first that fails."""

from __future__ import annotations

import time
from pathlib import Path

from parajob.runtime.job import run_parallel_step
from parajob.runtime.report import Outcome
from parajob.spec.model import Pipeline


def default_run_dir(pipeline_file: Path) -> Path:
    """./runs/<pipeline name>-<YYYYmmdd-HHMMSS>[-N]: a fresh folder per run."""
    base = Path("runs") / f"{pipeline_file.stem}-{time.strftime('%Y%m%d-%H%M%S')}"
    candidate, n = base, 1
    while candidate.exists():
        n += 1
        candidate = base.with_name(f"{base.name}-{n}")
    return candidate.resolve()


def run_pipeline(pipeline: Pipeline, run_dir: Path) -> list[Outcome]:
    outcomes: list[Outcome] = []
    for step in pipeline.jobs.values():
        outcome = run_parallel_step(step, run_dir)
        outcomes.append(outcome)
        if not outcome.succeeded:
            break
    return outcomes
