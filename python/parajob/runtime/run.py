"""The owner of one run: everything between "run this pipeline there" and its RunResult.

    CLI (parajob run / job create)      parajob.run (api.py)       parajob.map_batches
            \\                                 |                          |
             +------------> RunRequest ------+                          |
                                 |  execute()                           |
                                 v                                      |
    computes   the computes file under --compute / compute= (runtime/computes.py)
    claim      RunFolder.claim / claim_new: one owner per run folder     |
    record?    --resume: read parajob-run.json (pipeline, --set, --datastore)
    write      an SDK entity: dumped to <run>/parajob-pipeline.yml       |
    load       spec.load_pipeline (outputs bind inside the run folder)  |
    preflight  entry scripts imported in a probe; warnings -> warn()    |
    record     parajob-run.json (first run only)                        |
    run        run_loaded(): runner.run_pipeline ------------------------+
                  -> outcomes -> RunResult -> <run>/run_result.json

Invariants:
- The folder is held (a kernel lock) from before anything in it is read until the run's
  end; a run refused before it started (SpecError), or interrupted then (Ctrl-C in the
  import check), leaves no folder it made and no file it wrote (discard_if_unused), and
  raises.
- A job that ran and failed is not an exception: its RunResult says "failed".
- Nothing here prints: warnings go to the caller's ``warn``; summaries are the caller's.
- Safe from any thread: no signal handler unless ``options.handle_signals`` (and then
  only on the main thread, runtime/options.py); nothing process-wide is left changed.
  Runs of one process go one at a time (a lock: see ``_one_run``).
"""

from __future__ import annotations

import json
import os
import shutil
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING

from parajob.errors import Diagnostic, SpecError
from parajob.runner import (
    StepOutcome,
    new_run_dir_base,
    record_run,
    recorded_flags,
    recorded_options,
    recorded_pipeline,
    run_pipeline,
)
from parajob.runtime.computes import unused_computes, with_file_computes
from parajob.runtime.options import RunOptions
from parajob.runtime.run_folder import RunFolder, missing_ancestors
from parajob.runtime.skip_items import read_skip_list, skip_list_error
from parajob.runtime.spool import write_atomically
from parajob.spec.model import Pipeline

if TYPE_CHECKING:
    # Imported where a result is made, after the steps ran: results (and what it imports)
    # is not needed before the first worker starts.
    from parajob.results import RunResult

__all__ = [
    "Finished",
    "RUN_RESULT",
    "SDK_PIPELINE",
    "RunRequest",
    "execute",
    "one_run_at_a_time",
    "parse_memory_size",
    "run_loaded",
]

RUN_RESULT = "run_result.json"
SDK_PIPELINE = "parajob-pipeline.yml"  # where a Pipeline entity is dumped, in its run folder
SKIP_ITEMS = "parajob-skip-items.csv"  # the --skip-items file's copy, which a resume reads
MEMORY_UNITS = {"kb": 2**10, "mb": 2**20, "gb": 2**30}


@dataclass(frozen=True)
class RunRequest:
    """What to run, and where. Exactly one of ``pipeline_file`` / ``dump`` names the
    pipeline, or neither with ``options.resume`` (the run folder's own is used).

    ``dump``: writes the pipeline's YAML to the path it is given (an SDK entity's
    ``dump``); it is called with a path inside the run folder, once the folder is held.
    ``name``: the stem of a new run folder's name when ``run_dir`` is None
    (./runs/<name>-<time>); the pipeline file's stem by default.
    """

    pipeline_file: Path | None = None
    run_dir: Path | None = None
    options: RunOptions = field(default_factory=RunOptions)
    overrides: tuple[str, ...] = ()
    datastores: Mapping[str, Path] = field(default_factory=dict)
    dump: Callable[[Path], object] | None = None
    name: str | None = None


@dataclass(frozen=True)
class Finished:
    """A run that started: its result, and the runtime's outcomes (their ``summary()`` is
    what the CLI prints)."""

    result: RunResult
    outcomes: tuple[StepOutcome, ...]


# One run at a time per process. The local executor and the import check make this
# process a child subreaper and, at their end, kill every child that was not there at
# their start and reap exited ones (executors/reaping.py): a second run going on in another
# thread would have its workers killed or its exit statuses stolen. So calls from several
# threads queue here instead. A forked child gets a fresh lock (a worker's entry script may
# run parajob itself; the lock it inherits is held by the driver's thread, which it lacks).
_one_run = threading.Lock()
_inside = threading.local()


def _fresh_lock() -> None:
    global _one_run
    _one_run = threading.Lock()
    _inside.__dict__.clear()


os.register_at_fork(after_in_child=_fresh_lock)


@contextmanager
def one_run_at_a_time() -> Iterator[None]:
    """Hold this process's run lock for the block (waiting for another thread's run to
    end first). SpecError when this thread holds it already: a run started from inside a
    run (its on_progress callback) would deadlock."""
    if getattr(_inside, "running", False):
        raise SpecError(
            [
                Diagnostic(
                    "parajob.run",
                    None,
                    None,
                    "",
                    "called from inside a run of the same thread (an on_progress callback?)",
                    "start the second run after the first returned, or "
                    "from another thread (it waits for the first)",
                )
            ]
        )
    with _one_run:
        _inside.running = True
        try:
            yield
        finally:
            _inside.running = False


def execute(request: RunRequest, warn: Callable[[str], object]) -> Finished:
    """Claim the run folder, load, check and run the pipeline; blocks until the run ends
    (and, first, until a run of another thread of this process has ended).

    Raises SpecError (bad input, a folder in use, a resume refused, a call from inside a
    run's own callback) before any step started, having removed what it made; never for
    a job that ran and failed."""
    _check(request)
    # The computes file (runtime/computes.py) is read here, once per run, for the CLI and
    # parajob.run alike: a bad one is refused before any folder exists.
    request = replace(request, options=with_file_computes(request.options))
    options = request.options
    for flag, value in (
        ("max_tasks_per_worker (--max-tasks-per-worker)", options.max_tasks_per_worker),
        ("max_worker_memory (--max-worker-memory)", options.max_worker_memory_bytes),
    ):
        if options.serial and value is not None:
            warn(
                f"parajob: warning: {flag} does nothing with serial (--serial): there is "
                "no worker process to replace"
            )
    with one_run_at_a_time():
        return _execute(request, warn)


def _execute(request: RunRequest, warn: Callable[[str], object]) -> Finished:
    started = time.monotonic()
    with _claimed(request) as folder:
        wrote: list[Path] = []
        try:
            pipeline, options = _load(request, folder.path, warn, wrote)
        except BaseException:  # refused, or Ctrl-C in the import check: nothing started
            for path in wrote:  # a refused run leaves nothing of its own behind
                path.unlink(missing_ok=True)
            folder.discard_if_unused()
            raise
        try:
            outcomes = tuple(run_pipeline(pipeline, folder.path, options))
        except SpecError:  # a step's input found bad before its workers started
            if not any(p.is_dir() for p in folder.path.iterdir()):  # no step began (a
                for path in wrote:  # cluster refused at connect): leave nothing of ours
                    path.unlink(missing_ok=True)
            folder.discard_if_unused()
            raise
        result = _result(folder.path, outcomes, started)
        write_run_result(result, warn)
    return Finished(result, outcomes)


def run_loaded(
    pipeline: Pipeline,
    run_dir: Path,
    options: RunOptions,
    warn: Callable[[str], object] = lambda _text: None,
) -> RunResult:
    """Run a pipeline already loaded for ``run_dir`` (spec.load_pipeline(run_dir=...)),
    which the caller holds (RunFolder.claim); writes <run>/run_result.json. For callers
    that build their pipeline themselves (parajob.map_batches); keeps no run record, so
    such a run is resumed by the same caller, not by ``--resume``. Raises SpecError for
    bad input found before a step started. Takes the process's run lock unless this thread
    holds it (a caller that also runs preflight holds ``one_run_at_a_time()`` around both)."""
    started = time.monotonic()
    with nullcontext() if getattr(_inside, "running", False) else one_run_at_a_time():
        outcomes = run_pipeline(pipeline, run_dir, options)
    result = _result(run_dir, outcomes, started)
    write_run_result(result, warn)
    return result


def _result(run_dir: Path, outcomes: Iterable[StepOutcome], started: float) -> RunResult:
    from parajob.results import RunResult

    return RunResult.from_outcomes(run_dir, outcomes, time.monotonic() - started)


def write_run_result(result: RunResult, warn: Callable[[str], object]) -> None:
    """<run>/run_result.json, atomically; a disk too full for it is warned about (the
    result stands, and the steps' job_result files hold the same)."""
    data = json.dumps(result.to_dict(), indent=2, ensure_ascii=True).encode("ascii")
    target = result.run_dir / RUN_RESULT
    try:
        write_atomically(target, lambda tmp: tmp.write_bytes(data))
    except OSError as exc:
        warn(f"parajob: could not write {target}: {exc.strerror or exc}")


def parse_memory_size(text: str) -> int:
    """'512mb', '2gb', '64kb' or a bare number of MiB -> bytes; ValueError otherwise."""
    value = text.strip().lower()
    unit = MEMORY_UNITS.get(value[-2:], 0)
    number = value[:-2] if unit else value
    if not number.isdigit() or int(number) == 0:
        raise ValueError(f"expected a size like 512mb or 2gb, found {text!r}")
    return int(number) * (unit or 2**20)


def _check(request: RunRequest) -> None:
    """The combinations no run can start from (the CLI checks its own flags first)."""
    problems = []
    if request.options.resume and request.run_dir is None:
        problems.append(
            (
                "run_dir",
                "resume needs the run folder to finish",
                "pass run_dir=<the folder of the run>",
            )
        )
    if request.options.rerun_changed and not request.options.resume:
        problems.append(
            (
                "rerun_changed",
                "rerun_changed goes with resume",
                "pass resume=True and run_dir=<the folder of the run>",
            )
        )
    if not request.options.resume and request.pipeline_file is None and request.dump is None:
        problems.append(
            (
                "pipeline",
                "no pipeline to run",
                "pass a pipeline YAML path or a parajob.Pipeline, or resume=True with run_dir",
            )
        )
    if problems:
        raise SpecError(
            [
                Diagnostic("parajob.run", None, None, name, message, hint)
                for name, message, hint in problems
            ]
        )


def _claimed(request: RunRequest) -> AbstractContextManager[RunFolder]:
    """One owner per run folder: claimed before anything in it is read or written."""
    if request.options.resume:
        assert request.run_dir is not None
        recorded_pipeline(request.run_dir.resolve())  # a run folder at all? (reads only)
        return RunFolder.claim(request.run_dir, create=False)
    if request.run_dir is not None:
        return RunFolder.claim(request.run_dir)
    name = request.name or (request.pipeline_file.stem if request.pipeline_file else "pipeline")
    base = new_run_dir_base(Path(name))
    made_above = missing_ancestors(base)  # removed again if the run is refused
    try:
        base.parent.mkdir(parents=True, exist_ok=True)  # ./runs (claim_new makes the rest)
    except OSError as exc:
        raise SpecError(
            [
                Diagnostic(
                    str(base.parent.absolute()),
                    None,
                    None,
                    "--run-dir",
                    f"cannot create the folder for new runs: {exc.strerror or exc}",
                    "run from a folder you can write to, or give a run "
                    "folder (--run-dir, run_dir=)",
                )
            ]
        ) from exc
    return RunFolder.claim_new(base, made_above)


def _load(
    request: RunRequest, run_dir: Path, warn: Callable[[str], object], wrote: list[Path]
) -> tuple[Pipeline, RunOptions]:
    """Load and check the pipeline in run_dir, which this process holds; record the run.
    ``wrote``: the files this call made in the run folder (removed if the run is refused).
    Returns the options the steps run with: a resume's are the run's own --isolate-failures
    and --skip-items unless given again."""
    from parajob.runtime.preflight import checked_by_workers, preflight
    from parajob.spec import load_pipeline

    pipeline_file, overrides, folders = (
        request.pipeline_file,
        request.overrides,
        dict(request.datastores),
    )
    if request.dump is not None:
        pipeline_file = run_dir / SDK_PIPELINE
        if not pipeline_file.exists():
            wrote.append(pipeline_file)
        _dump(request.dump, pipeline_file)
    if request.options.resume:
        pipeline_file = pipeline_file or recorded_pipeline(run_dir)
        # The run's own --set and --datastore, each unless given again (one given alone
        # must not drop the other's record: a run planned anew would "change").
        recorded_sets, recorded_folders = recorded_options(run_dir)
        overrides = overrides or tuple(recorded_sets)
        folders = folders or recorded_folders
        n, skip = recorded_flags(run_dir)
        given = request.options
        options = replace(
            given,
            isolate_failures=n if given.isolate_failures is None else given.isolate_failures,
            skip_items=given.skip_items or skip,
        )
    else:
        options = _with_skip_copy(request.options, run_dir, wrote)
    # Read once, here: a list that is no quarantine.csv is refused before anything starts.
    skip_steps = set(read_skip_list(options.skip_items)) if options.skip_items else set()
    assert pipeline_file is not None
    pipeline = load_pipeline(
        pipeline_file, run_dir=run_dir, datastores=folders, overrides=overrides
    )
    used = {
        c
        for c in [
            pipeline.default_compute,
            pipeline.compute,
            *(s.compute for s in pipeline.jobs.values()),
        ]
        if c
    }
    unused = unused_computes(request.options, used, str(pipeline_file))
    if unused is not None:  # a typo'd --compute would run the cluster step here, silently
        raise unused
    by_workers = checked_by_workers(pipeline, request.options)
    for warning in pipeline.warnings + preflight(pipeline, checked_by_workers=by_workers):
        warn(str(warning))
    if not (run_dir / "parajob-run.json").exists():
        wrote.append(run_dir / "parajob-run.json")
    record_run(
        run_dir, pipeline_file, overrides, folders, options.isolate_failures, options.skip_items
    )
    if skip_steps - set(pipeline.jobs):
        shown = request.options.skip_items or options.skip_items  # not the run's copy
        warn(
            f"parajob: warning: --skip-items {shown} names step(s) this pipeline does not "
            f"have: {', '.join(sorted(skip_steps - set(pipeline.jobs)))}"
        )
    return pipeline, options


def _with_skip_copy(options: RunOptions, run_dir: Path, wrote: list[Path]) -> RunOptions:
    """A fresh run's --skip-items, copied into the run folder: a resume skips the same items
    even if the file changes or goes meanwhile."""
    if options.skip_items is None:
        return options
    given = options.skip_items
    copy = run_dir / SKIP_ITEMS
    wrote.append(copy)
    try:
        write_atomically(copy, lambda tmp: shutil.copyfile(given, tmp))
    except OSError as exc:
        raise skip_list_error(given, f"cannot be read: {exc.strerror or exc}") from None
    return replace(options, skip_items=copy)


def _dump(dump: Callable[[Path], object], target: Path) -> None:
    """An entity's YAML into the run folder, atomically (a resume reads it again)."""
    try:
        write_atomically(target, lambda tmp: dump(tmp))
    except SpecError:
        raise
    except (OSError, ValueError, TypeError) as exc:
        raise SpecError(
            [
                Diagnostic(
                    str(target),
                    None,
                    None,
                    "pipeline",
                    f"the pipeline could not be written as YAML: {type(exc).__name__}: {exc}",
                    "check the pipeline's fields (parajob.load reads what pipeline.dump writes)",
                )
            ]
        ) from exc
