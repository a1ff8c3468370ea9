"""The ``parajob`` command line.

    parajob run PIPELINE.yml [--run-dir DIR]      run a pipeline here
    parajob job create --file PIPELINE.yml        the same, named as Azure's CLI names it
    parajob validate PIPELINE.yml                 check a pipeline without running it

Exit codes: 0 the job succeeded; 1 the job ran and failed (a limit was exceeded);
2 bad input (pipeline YAML, paths, entry script), with a message naming file, line, field.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from functools import wraps
from pathlib import Path
from typing import Any

import click

from parajob.errors import ParajobError, SpecError

EXIT_OK, EXIT_FAILED, EXIT_BAD_INPUT = 0, 1, 2


def _run_options(f: Callable[..., Any]) -> Callable[..., Any]:
    """Options shared by `run` and `job create`."""

    @click.option("--run-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
                  help="Folder for outputs and logs (default: ./runs/<pipeline>-<time>).")
    @wraps(f)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        return f(*args, **kwargs)

    return wrapper


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="parajob")
def main() -> None:
    """Run Azure ML parallel jobs on this machine.

    Exit codes: 0 success, 1 the job failed, 2 bad input.
    """


@main.command("run")
@click.argument("pipeline", type=click.Path(dir_okay=False, path_type=Path))
@_run_options
def run_command(pipeline: Path, run_dir: Path | None) -> None:
    """Run PIPELINE (a pipeline YAML with parallel steps)."""
    sys.exit(_run(pipeline, run_dir))


@main.group("job")
def job_group() -> None:
    """Azure CLI-style commands (`az ml job ...`)."""


@job_group.command("create")
@click.option("--file", "-f", "pipeline", required=True,
              type=click.Path(dir_okay=False, path_type=Path), help="The pipeline YAML.")
@_run_options
def job_create(pipeline: Path, run_dir: Path | None) -> None:
    """Run a pipeline, like `az ml job create --file PIPELINE.yml`."""
    sys.exit(_run(pipeline, run_dir))


@main.command("validate")
@click.argument("pipeline", type=click.Path(dir_okay=False, path_type=Path))
def validate_command(pipeline: Path) -> None:
    """Check PIPELINE without running it (exit 0 valid, 2 invalid)."""
    from parajob.runtime.job import check_entry_script
    from parajob.spec import load_pipeline

    try:
        loaded = load_pipeline(pipeline)
        for step in loaded.jobs.values():
            check_entry_script(step)
    except SpecError as exc:
        click.echo(str(exc), err=True)
        sys.exit(EXIT_BAD_INPUT)
    for warning in loaded.warnings:
        click.echo(str(warning), err=True)
    click.echo(f"{pipeline}: valid ({len(loaded.jobs)} step(s))")


def _run(pipeline_file: Path, run_dir: Path | None) -> int:
    from parajob.runner import default_run_dir, run_pipeline
    from parajob.spec import load_pipeline

    run_dir = (run_dir.resolve() if run_dir else default_run_dir(pipeline_file))
    try:
        pipeline = load_pipeline(pipeline_file, run_dir=run_dir)
        for warning in pipeline.warnings:
            click.echo(str(warning), err=True)
        outcomes = run_pipeline(pipeline, run_dir)
    except SpecError as exc:
        click.echo(str(exc), err=True)
        return EXIT_BAD_INPUT
    except ParajobError as exc:
        click.echo(f"parajob: {exc}", err=True)
        return EXIT_FAILED
    for outcome in outcomes:
        click.echo(outcome.summary())
    return EXIT_OK if outcomes and all(o.succeeded for o in outcomes) else EXIT_FAILED
