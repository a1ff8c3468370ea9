"""Running a whole pipeline: its steps in order, stopping at the first that fails.

A run folder records which pipeline it runs (parajob-run.json), so that
``parajob run --resume RUN_DIR`` can finish it after the driver was killed or interrupted.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from parajob.errors import Diagnostic, SpecError
from parajob.runtime.job import RunOptions, run_parallel_step
from parajob.runtime.report import Outcome
from parajob.spec.model import Pipeline

RUN_RECORD = "parajob-run.json"


def default_run_dir(pipeline_file: Path) -> Path:
    """./runs/<pipeline name>-<YYYYmmdd-HHMMSS>[-N]: a fresh folder per run."""
    base = Path("runs") / f"{pipeline_file.stem}-{time.strftime('%Y%m%d-%H%M%S')}"
    candidate, n = base, 1
    while candidate.exists():
        n += 1
        candidate = base.with_name(f"{base.name}-{n}")
    return candidate.resolve()


def record_run(run_dir: Path, pipeline_file: Path) -> None:
    """Write <run>/parajob-run.json (first run only): what --resume needs to start again."""
    run_dir.mkdir(parents=True, exist_ok=True)
    record = run_dir / RUN_RECORD
    if not record.exists():
        record.write_text(json.dumps({"pipeline": str(pipeline_file.resolve()),
                                      "created": time.strftime("%Y-%m-%dT%H:%M:%S")}, indent=2))


def recorded_pipeline(run_dir: Path) -> Path:
    """The pipeline a run folder was started with; SpecError when it is not a run folder."""
    record = run_dir / RUN_RECORD
    try:
        return Path(json.loads(record.read_text())["pipeline"])
    except (OSError, ValueError, KeyError) as exc:
        raise SpecError([Diagnostic(str(record), None, None, "--resume",
                                    f"not a parajob run folder (cannot read {RUN_RECORD}: {exc})",
                                    "pass the folder that `parajob run` printed under 'logs:', "
                                    "two levels up")]) from exc


def run_pipeline(pipeline: Pipeline, run_dir: Path, options: RunOptions | None = None) -> list[Outcome]:
    outcomes: list[Outcome] = []
    for step in pipeline.jobs.values():
        outcome = run_parallel_step(step, run_dir, options)
        outcomes.append(outcome)
        if not outcome.succeeded:
            break
    return outcomes
