"""The ``parajob`` command line.

    parajob run PIPELINE.yml [--run-dir DIR]      run a pipeline here
    parajob job create --file PIPELINE.yml        the same, named as Azure's CLI names it
    parajob validate PIPELINE.yml                 check a pipeline without running it
    parajob show RUN_DIR [--html [-o FILE]]       what happened in a run (one still going too)
    parajob example [NAME [DIR]]                  write a bundled example into DIR (default
                                                  ./NAME); no NAME: list the examples
    parajob run --resume RUN_DIR [--rerun-changed]
                                                  finish a killed run; refused while another
                                                  parajob holds RUN_DIR, and when its input or
                                                  code changed (unless --rerun-changed)

    --set jobs.<step>.<field>=<value>             change a field, validated like the file
    --datastore NAME=PATH                         where azureml://datastores/NAME/... lives

``run`` makes every check ``validate`` makes (YAML, paths, entry scripts imported in a
short-lived subprocess) before any step starts.

Exit codes: 0 the job succeeded; 1 the job ran and failed (a limit was exceeded);
2 bad input (pipeline YAML, paths, entry script), with a message naming file, line, field;
130 interrupted (Ctrl-C / SIGTERM): the run can be finished with --resume.
"""

from __future__ import annotations

import signal
import sys
from collections.abc import Callable
from functools import wraps
from pathlib import Path
from typing import Any

import click

from parajob import __version__, terminal
from parajob.errors import ParajobError, SpecError

EXIT_OK, EXIT_FAILED, EXIT_BAD_INPUT, EXIT_INTERRUPTED = 0, 1, 2, 130


def _memory_size(text: str | None) -> int | None:
    """'512mb', '2gb' or a bare number of MiB -> bytes."""
    if text is None:
        return None
    from parajob.runtime.run import parse_memory_size

    try:
        return parse_memory_size(text)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None


def _pairs(option: str, values: tuple[str, ...]) -> dict[str, str]:
    out: dict[str, str] = {}
    for value in values:
        name, eq, rest = value.partition("=")
        if not eq or not name.strip() or not rest.strip():
            raise click.BadParameter(f"expected NAME=VALUE, found {value!r}", param_hint=option)
        out[name.strip()] = rest.strip()
    return out


def _spec_options(f: Callable[..., Any]) -> Callable[..., Any]:
    """Options that change how the YAML is read: shared by `run`, `job create`, `validate`."""

    @click.option(
        "--set",
        "overrides",
        multiple=True,
        metavar="KEY=VALUE",
        help="Set a field before validation, e.g. jobs.score.mini_batch_size=5 "
        "(the value is YAML; repeatable).",
    )
    @click.option(
        "--datastore",
        "datastores",
        multiple=True,
        metavar="NAME=PATH",
        help="Local folder of datastore NAME for azureml://datastores/NAME/paths/... "
        "(default: <run>/datastores/NAME; repeatable).",
    )
    @wraps(f)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        return f(*args, **kwargs)

    return wrapper


def _run_options(f: Callable[..., Any]) -> Callable[..., Any]:
    """Options shared by `run` and `job create`."""

    @_spec_options
    @click.option(
        "--run-dir",
        type=click.Path(file_okay=False, path_type=Path),
        default=None,
        help="Folder for outputs and logs (default: ./runs/<pipeline>-<time>).",
    )
    @click.option(
        "--resume",
        "resume_dir",
        type=click.Path(file_okay=False, path_type=Path),
        default=None,
        help="Finish the run in RUN_DIR (after a kill or Ctrl-C): only "
        "mini-batches not yet accepted run again.",
    )
    @click.option(
        "--rerun-changed",
        is_flag=True,
        default=False,
        help="With --resume: run again the mini-batches whose input changed since "
        "the run started (all of them when a file under task.code changed) instead "
        "of refusing; the rest keep their results.",
    )
    @click.option(
        "--max-tasks-per-worker",
        type=click.IntRange(min=1),
        default=None,
        help="Replace each worker process after this many mini-batches.",
    )
    @click.option(
        "--max-worker-memory",
        default=None,
        help="Replace a worker once its resident memory exceeds this (e.g. 2gb), "
        "between mini-batches.",
    )
    @click.option(
        "--compute",
        "computes",
        multiple=True,
        metavar="NAME=ADDRESS",
        help="Run the steps whose compute is NAME on the Dask cluster whose "
        "scheduler is at ADDRESS (tcp://host:8786); repeatable. Other steps run "
        "on this machine.",
    )
    @click.option(
        "--isolate-failures",
        type=click.IntRange(min=0),
        default=None,
        metavar="N",
        help="Bisect each mini-batch whose retries are spent until its failing items "
        "are found; quarantine up to N of them (logs/quarantine.csv) and keep the "
        "rest's results. Every parallel step; overrides --isolate_failures in "
        "program_arguments; 0: off.",
    )
    @click.option(
        "--skip-items",
        type=click.Path(dir_okay=False, exists=True, path_type=Path),
        default=None,
        metavar="QUARANTINE_CSV",
        help="Leave out the items a quarantine.csv lists (of the steps it names), e.g. "
        "to rerun a job without the inputs an earlier run quarantined.",
    )
    @click.option(
        "--quiet",
        "-q",
        is_flag=True,
        default=False,
        help="No live progress line (nor a command step's output) on stderr; the "
        "summary, warnings and failures are still shown.",
    )
    @click.option(
        "--serial",
        is_flag=True,
        default=False,
        help="Debug mode: init/run/shutdown in this process, one mini-batch at a "
        "time, so breakpoint() and pdb work (stdin/stdout stay the terminal's). "
        "Same planning, retries, thresholds, logs and output; timeouts are "
        "reported, not enforced.",
    )
    @wraps(f)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        return f(*args, **kwargs)

    return wrapper


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(version=__version__, package_name="parajob")
def main() -> None:
    """Run Azure ML parallel jobs on this machine.

    Exit codes: 0 success, 1 the job failed, 2 bad input, 130 interrupted (Ctrl-C,
    SIGTERM: finish it with `parajob run --resume RUN_DIR`).
    """
    # Before any file is opened: a closed stdout/stderr must not become a log file's fd.
    terminal.ensure_standard_streams()


@main.command("run")
@click.argument("pipeline", type=click.Path(dir_okay=False, path_type=Path), required=False)
@_run_options
def run_command(pipeline: Path | None, **options: Any) -> None:
    """Run PIPELINE (a pipeline of parallel and command steps), or --resume a run."""
    sys.exit(_run(pipeline, **options))


@main.group("job")
def job_group() -> None:
    """Azure CLI-style commands (`az ml job ...`)."""


@job_group.command("create")
@click.option(
    "--file",
    "-f",
    "pipeline",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="The pipeline YAML.",
)
@_run_options
def job_create(pipeline: Path, **options: Any) -> None:
    """Run a pipeline, like `az ml job create --file PIPELINE.yml`."""
    sys.exit(_run(pipeline, **options))


@main.command("validate")
@click.argument("pipeline", type=click.Path(dir_okay=False, path_type=Path))
@_spec_options
def validate_command(
    pipeline: Path, overrides: tuple[str, ...], datastores: tuple[str, ...]
) -> None:
    """Check PIPELINE without running it: the YAML, the paths it names, and that each
    entry script imports and defines run() (exit 0 valid, 2 invalid)."""
    from parajob.runner import default_run_dir
    from parajob.runtime.preflight import preflight
    from parajob.spec import load_pipeline

    folders = {k: Path(v) for k, v in _pairs("--datastore", datastores).items()}
    try:
        # The run folder a run would use (not created): outputs bind as they would then.
        loaded = load_pipeline(
            pipeline, run_dir=default_run_dir(pipeline), datastores=folders, overrides=overrides
        )
        warnings = loaded.warnings + preflight(loaded)
    except SpecError as exc:
        terminal.echo(str(exc), err=True)
        sys.exit(EXIT_BAD_INPUT)
    for warning in warnings:
        terminal.echo(str(warning), err=True)
    steps = ", ".join(f"{name} ({loaded.jobs[name].type})" for name in loaded.run_order())
    terminal.echo(f"{pipeline}: valid ({len(loaded.jobs)} step(s): {steps})")


@main.command("show")
@click.argument("run_dir", type=click.Path(file_okay=False, path_type=Path))
@click.option(
    "--html",
    "html",
    is_flag=True,
    default=False,
    help="Write one self-contained HTML report (timeline, throughput, failures, "
    "settings) instead of printing a summary.",
)
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="With --html: the file to write (default RUN_DIR/parajob-report.html).",
)
def show_command(run_dir: Path, html: bool, output: Path | None) -> None:
    """Show what happened in RUN_DIR: settings, status, counts, throughput, the slowest and
    failed mini-batches with their log files. Works on a run that is still going (reads
    its files, never takes its lock)."""
    sys.exit(_show(run_dir, html, output))


def _show(run_dir: Path, html: bool, output: Path | None) -> int:
    from parajob.show import html as html_report
    from parajob.show import text
    from parajob.show.model import load_run

    if output is not None and not html:
        raise click.UsageError("-o/--output goes with --html")
    try:
        run = load_run(run_dir)
    except SpecError as exc:
        terminal.echo(str(exc), err=True)
        return EXIT_BAD_INPUT
    if not html:
        terminal.write(sys.stdout, text.render(run))
        return EXIT_OK
    target = output if output is not None else run_dir / "parajob-report.html"
    try:
        html_report.write(run, target)
    except OSError as exc:
        terminal.echo(f"parajob: could not write {target}: {exc.strerror or exc}", err=True)
        return EXIT_BAD_INPUT
    terminal.echo(f"wrote {target}")
    return EXIT_OK


@main.command("example")
@click.argument("name", required=False)
@click.argument("directory", required=False, type=click.Path(path_type=Path))
def example_command(name: str | None, directory: Path | None) -> None:
    """Write a bundled example out (no NAME: list them).

    Copies example NAME into DIRECTORY (a new or empty folder; default ./NAME), ready for
    `parajob run DIRECTORY/pipeline.yml`; a folder with files in it is refused (exit 2)."""
    from parajob.examples import bundled, write_example

    if name is None:
        terminal.echo("examples bundled with parajob (parajob example NAME DIR):")
        for example in bundled():
            terminal.echo(f"  {example.name}  {example.description}")
        return
    target = directory if directory is not None else Path(name)
    try:
        example = write_example(name, target)
    except SpecError as exc:
        terminal.echo(str(exc), err=True)
        sys.exit(EXIT_BAD_INPUT)
    terminal.echo(f"wrote the {example.name} example to {target}: {example.description}")
    terminal.echo(f"run it with: parajob run {target / 'pipeline.yml'}")


def _run(
    pipeline_file: Path | None,
    run_dir: Path | None,
    resume_dir: Path | None,
    max_tasks_per_worker: int | None,
    max_worker_memory: str | None,
    rerun_changed: bool = False,
    overrides: tuple[str, ...] = (),
    datastores: tuple[str, ...] = (),
    serial: bool = False,
    computes: tuple[str, ...] = (),
    quiet: bool = False,
    isolate_failures: int | None = None,
    skip_items: Path | None = None,
) -> int:
    """A thin client of runtime.run: the options in, the summaries out, an exit code."""
    from parajob.runtime import fd_guard

    fd_guard.grow_table()  # first, while this process has one thread (see there)
    from parajob.runtime.computes import check_address
    from parajob.runtime.options import RunOptions
    from parajob.runtime.run import RunRequest, execute

    if rerun_changed and resume_dir is None:
        raise click.UsageError("--rerun-changed goes with --resume RUN_DIR")
    if resume_dir is None and pipeline_file is None:
        raise click.UsageError("give a PIPELINE file, or --resume RUN_DIR")
    if resume_dir is not None and run_dir is not None and run_dir.resolve() != resume_dir.resolve():
        raise click.UsageError(
            f"--run-dir {run_dir} and --resume {resume_dir} name two "
            "folders: a resumed run stays in its own folder (drop "
            "--run-dir)"
        )
    clusters = _pairs("--compute", computes)
    for name, address in clusters.items():
        if (why := check_address(name, address)) is not None:
            raise click.BadParameter(why, param_hint="--compute")
    if clusters and serial:
        raise click.UsageError(
            "--serial runs everything in this process: it does not go with --compute"
        )
    options = RunOptions(
        resume=resume_dir is not None,
        rerun_changed=rerun_changed,
        max_tasks_per_worker=max_tasks_per_worker,
        max_worker_memory_bytes=_memory_size(max_worker_memory),
        serial=serial,
        handle_signals=True,
        computes=clusters,
        quiet=quiet,
        isolate_failures=isolate_failures,
        skip_items=skip_items,
    )
    folders = {k: Path(v) for k, v in _pairs("--datastore", datastores).items()}
    request = RunRequest(
        pipeline_file,
        resume_dir if resume_dir is not None else run_dir,
        options,
        overrides,
        folders,
    )
    # Outside a step's engine (which installs its own handlers) SIGTERM is Ctrl-C too:
    # the default would end the process on the spot (exit 143), in the import check with
    # the run folder it made left behind.
    previous = signal.signal(signal.SIGTERM, _interrupt)
    try:
        finished = execute(request, warn=lambda text: terminal.echo(text, err=True))
    except SpecError as exc:
        terminal.echo(str(exc), err=True)
        return EXIT_BAD_INPUT
    except ParajobError as exc:
        terminal.echo(f"parajob: {exc}", err=True)
        return EXIT_FAILED
    except KeyboardInterrupt:  # outside a step's engine (its handler makes it a result)
        terminal.echo(
            "parajob: interrupted (a run folder left behind is finished with "
            "`parajob run --resume RUN_DIR`)",
            err=True,
        )
        return EXIT_INTERRUPTED
    finally:
        signal.signal(signal.SIGTERM, previous)
    outcomes = finished.outcomes
    for outcome in outcomes:
        terminal.echo(outcome.summary())  # the job's result does not depend on this write
    _show_failure(finished.result.run_dir, outcomes, clusters)
    if any(o.interrupted for o in outcomes):
        return EXIT_INTERRUPTED
    return EXIT_OK if outcomes and all(o.succeeded for o in outcomes) else EXIT_FAILED


def _show_failure(run_dir: Path, outcomes: tuple[Any, ...], computes: dict[str, str]) -> None:
    """On stderr, where the user looks (stdout may go to a file): the first step that did
    not succeed, its first failure with the traceback, and the command that resumes the
    run (for a failed run too: --resume runs again what did not succeed)."""
    from parajob.runtime.failures import terminal_block

    for outcome in outcomes:
        if not outcome.succeeded:
            terminal.echo(
                terminal_block(
                    outcome.step,
                    outcome.status,
                    outcome.reason,
                    getattr(outcome, "first_failure", None),
                    run_dir,
                    computes,
                ),
                err=True,
            )
            return


def _interrupt(_signum: int, _frame: object) -> None:
    raise KeyboardInterrupt
