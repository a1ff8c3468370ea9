"""Running a whole pipeline: its steps in dependency order, stopping at the first failure.

    Pipeline.run_order()  producers before consumers (spec.graph)
        for each step:
            stage   download inputs copied under <run>/<step>/inputs/; inputs another step
                    produced must exist
            record  <run>/<step>/logs/environment.txt: compute and environment as written,
                    and the Python that actually runs the step
            run     runtime.job.run_parallel_step | runtime.command_step.run_command_step

With ``settings.continue_on_step_failure: true`` (as on Azure) a failed step only stops the
steps that depend on it, directly or not; the others still run.

A run folder records which pipeline it runs (parajob-run.json), so that
``parajob run --resume RUN_DIR`` can finish it after the driver was killed or interrupted;
a command step that already succeeded in that folder is not run again.
"""

from __future__ import annotations

import json
import shutil
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from parajob.errors import Diagnostic, SpecError
from parajob.runtime.computes import cluster_for, mapped_name
from parajob.runtime.job import ScriptRejected, check_step_folder_fresh, run_parallel_step
from parajob.runtime.options import RunOptions
from parajob.runtime.preflight import script_diagnostic
from parajob.spec.model import CommandStep, Input, ParallelStep, Pipeline, Step

__all__ = [
    "RUN_RECORD",
    "StepOutcome",
    "default_run_dir",
    "new_run_dir_base",
    "record_run",
    "recorded_options",
    "recorded_pipeline",
    "run_pipeline",
    "stage_inputs",
]

RUN_RECORD = "parajob-run.json"


class StepOutcome(Protocol):
    """What the CLI needs from the end of any step."""

    step: str
    succeeded: bool
    interrupted: bool

    def summary(self) -> str: ...


@dataclass
class NotRun:
    """A step that did not start: an input its producer did not write, bad input found
    once an earlier step had run (run_pipeline), or a failed producer (with
    continue_on_step_failure)."""

    step: str
    reason: str
    succeeded: bool = False
    interrupted: bool = False

    def summary(self) -> str:
        return (
            f"step:                 {self.step}\n"
            f"status:               NOT RUN\n"
            f"reason:               {self.reason}\n"
        )


class StageError(Exception):
    """An input of a step cannot be made ready (its producer did not write it)."""


def new_run_dir_base(pipeline_file: Path) -> Path:
    """./runs/<pipeline name>-<YYYYmmdd-HHMMSS>: the name of a new run's folder, to which
    run_folder.make_unique_folder adds -2, -3, ... when it is taken (atomically)."""
    return Path("runs") / f"{pipeline_file.stem}-{time.strftime('%Y%m%d-%H%M%S')}"


def default_run_dir(pipeline_file: Path) -> Path:
    """The folder a run started now would get (not created: ``parajob validate`` binds
    outputs with it). A run itself creates its folder with RunFolder.claim_new."""
    base = new_run_dir_base(pipeline_file)
    candidate, n = base, 1
    while candidate.exists():
        n += 1
        candidate = base.with_name(f"{base.name}-{n}")
    return candidate.resolve()


def record_run(
    run_dir: Path,
    pipeline_file: Path,
    overrides: Sequence[str] = (),
    datastores: Mapping[str, Path] | None = None,
    isolate_failures: int | None = None,
    skip_items: Path | None = None,
) -> None:
    """Write <run>/parajob-run.json (first run only): what --resume needs to start again
    (the pipeline, its --set overrides and --datastore folders, --isolate-failures and
    --skip-items, which change what its rows are). SpecError when the run folder cannot be
    made (exit 2, before anything starts)."""
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise SpecError(
            [
                Diagnostic(
                    "--run-dir",
                    None,
                    None,
                    "",
                    f"cannot create the run folder {run_dir}: {exc.strerror or exc}",
                    "give --run-dir (run_dir=) a folder you can write to",
                )
            ]
        ) from exc
    record = run_dir / RUN_RECORD
    if not record.exists():
        record.write_text(
            json.dumps(
                {
                    "pipeline": str(pipeline_file.resolve()),
                    "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
                    "overrides": list(overrides),
                    "datastores": {
                        k: str(Path(v).resolve()) for k, v in (datastores or {}).items()
                    },
                    "isolate_failures": isolate_failures,
                    "skip_items": str(skip_items.resolve()) if skip_items else None,
                },
                indent=2,
            )
        )


def recorded_pipeline(run_dir: Path) -> Path:
    """The pipeline a run folder was started with; SpecError when it is not a run folder."""
    return Path(str(_read_record(run_dir)["pipeline"]))


def recorded_options(run_dir: Path) -> tuple[list[str], dict[str, Path]]:
    """The --set overrides and --datastore folders a run folder was started with."""
    record = _read_record(run_dir)
    return (
        [str(o) for o in record.get("overrides") or []],
        {str(k): Path(v) for k, v in (record.get("datastores") or {}).items()},
    )


def recorded_flags(run_dir: Path) -> tuple[int | None, Path | None]:
    """The --isolate-failures and --skip-items (its copy in the run folder) a run folder was
    started with (None: not given, or a run of an older parajob)."""
    record = _read_record(run_dir)
    n, skip = record.get("isolate_failures"), record.get("skip_items")
    return (
        n if isinstance(n, int) and not isinstance(n, bool) else None,
        Path(skip) if isinstance(skip, str) and skip else None,
    )


def _read_record(run_dir: Path) -> dict[str, Any]:
    record = run_dir / RUN_RECORD
    try:
        data = json.loads(record.read_text())
        data["pipeline"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise SpecError(
            [
                Diagnostic(
                    str(record),
                    None,
                    None,
                    "--resume",
                    f"not a parajob run folder (cannot read {RUN_RECORD}: {exc})",
                    "pass the folder that `parajob run` printed under 'logs:', two levels up",
                )
            ]
        ) from exc
    return dict(data)


def run_pipeline(
    pipeline: Pipeline, run_dir: Path, options: RunOptions | None = None
) -> list[StepOutcome]:
    """Run the steps; returns one outcome per step that was tried (or skipped). Raises
    SpecError when a parallel step finds bad input before its workers start and no step
    of this call has run yet; after one has, such a step is NotRun with the diagnostics as
    its reason (its input may be what an earlier step wrote, which nothing could check
    before the run; a SpecError would lose the results of the steps that ran)."""
    options = options or RunOptions()
    outcomes: list[StepOutcome] = []
    failed: set[str] = set()
    ran = False  # a step of this call ran: from here on, nothing is "before the start"
    if not options.resume:  # every step, before the first runs (a command step reran)
        for name in pipeline.run_order():
            check_step_folder_fresh(pipeline.jobs[name], run_dir)
    for name in pipeline.run_order():
        step = pipeline.jobs[name]
        broken = [d for d in step.depends_on if d in failed]
        if broken:
            failed.add(name)
            outcomes.append(
                NotRun(name, f"it reads the output of step '{broken[0]}', which failed")
            )
            continue
        done = _command_finished(step, run_dir) if options.resume else None
        if done is not None:
            outcomes.append(done)
            continue
        try:
            stage_inputs(step, run_dir)
        except StageError as exc:
            outcome: StepOutcome = NotRun(name, str(exc))
        else:
            try:
                outcome = (
                    run_parallel_step(
                        step, run_dir, options, compute=step.compute or pipeline.default_compute
                    )
                    if isinstance(step, ParallelStep)
                    else _run_command(step, run_dir, options)
                )
            except SpecError as exc:
                if not ran:
                    raise
                outcome = NotRun(name, str(exc))
            except ScriptRejected as exc:  # its workers were the import check (preflight.py)
                assert isinstance(step, ParallelStep)
                error = SpecError([script_diagnostic(pipeline, step, exc.probe)])
                if not ran:
                    raise error from None
                outcome = NotRun(name, str(error))
            else:
                ran = True
                _record(pipeline, step, run_dir, options)
        outcomes.append(outcome)
        if outcome.interrupted:
            break
        if not outcome.succeeded:
            failed.add(name)
            if not pipeline.continue_on_step_failure:
                break
    return outcomes


def _command_finished(step: Step, run_dir: Path) -> StepOutcome | None:
    """A command step's outcome when an earlier run of this folder finished it (--resume)."""
    if not isinstance(step, CommandStep):
        return None
    # Imported here, not at the top (as _run_command): a pipeline of parallel steps only
    # never needs runtime.command_step, and `parajob run` would import it before
    # its first worker starts otherwise.
    from parajob.runtime.command_step import finished_before

    return finished_before(step, run_dir)


def _run_command(step: Step, run_dir: Path, options: RunOptions) -> StepOutcome:
    from parajob.runtime.command_step import run_command_step

    assert isinstance(step, CommandStep)
    return run_command_step(step, run_dir, options)


def stage_inputs(step: Step, run_dir: Path) -> None:
    """Check inputs other steps produced, and copy ``download`` inputs (docs/contract.md §1.3)."""
    for inp in step.inputs.values():
        source = inp.origin or inp.path
        if inp.producer is not None and source is not None and not source.exists():
            producer, output = inp.producer
            raise StageError(
                f"input '{inp.name}' is output '{output}' of step '{producer}', "
                f"which wrote nothing there ({source})"
            )
        if inp.origin is not None and inp.path is not None:
            _copy(inp)


def _copy(inp: Input) -> None:
    assert inp.origin is not None and inp.path is not None
    target = inp.path.parent if inp.type == "uri_file" else inp.path
    if target.exists():
        shutil.rmtree(target)
    if inp.origin.is_dir():
        shutil.copytree(inp.origin, inp.path, symlinks=False)
    else:
        inp.path.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(inp.origin, inp.path)


def _record(pipeline: Pipeline, step: Step, run_dir: Path, options: RunOptions) -> None:
    """What the YAML asked for and what runs instead (docs/contract.md §1.3: recorded, not
    provisioned)."""
    if isinstance(step, CommandStep):
        environment, conda = step.environment, step.conda_file
    else:
        environment, conda = step.task.environment, step.task.conda_file
    compute = step.compute or pipeline.default_compute
    cluster = cluster_for(options, compute) if isinstance(step, ParallelStep) else None
    where = f"the Dask cluster at {cluster}" if cluster else "this machine"
    mapped = mapped_name(options, compute)
    if cluster and mapped is not None and mapped in options.computes_from_file:
        where += f" (computes file {options.computes_from_file[mapped]})"
    text = (
        f"step:          {step.name} ({step.type})\n"
        f"compute:       {compute or '(not given)'} -> {where}\n"
        f"environment:   {json.dumps(environment, default=str) if environment else '(none)'}\n"
        f"conda_file:    {conda or '(none)'}\n"
        f"runs with:     {sys.executable} (Python {sys.version.split()[0]}); the environment "
        "is not built\n"
    )
    logs = run_dir / step.name / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    (logs / "environment.txt").write_text(text, encoding="utf-8")
