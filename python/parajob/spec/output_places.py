"""Outputs are the run's own (issue 8): where an output with a ``path:`` may not be.

Checked once every step is read, so that every step's inputs and outputs are known. An
output with a ``path:`` (its own, or a pipeline output's it is bound to) may not:

* be, contain, or lie inside a data input of any step: the run would overwrite, or list
  and read back, the data it reads. An input bound to an output with
  ``${{parent.jobs.<step>.outputs.<out>}}`` *is* that output and is left out;
* be, contain, or lie inside the ``task.code`` folder of a parallel step: the entry script
  and its modules are imported from there in place (``path: ./src/entry.py`` overwrote the
  script itself);
* be, contain, or lie inside another output: two writers of one place mix or lose rows;
* be or contain the pipeline file or a component file;
* be, contain, or lie inside parajob's own files in the run folder: ``parajob-run.json``,
  ``.parajob.lock``, and each step's ``logs`` and ``sys`` (a later ``--resume`` reads them,
  and the run writes them over the output's rows);
* lie where its folder cannot be created: the nearest existing folder above it must be a
  folder, writable, on a file system that is not read-only and not procfs/sysfs (root
  passes ``os.access`` everywhere, and ``mkdir`` fails there all the same).

The run folder itself may not be, or lie inside, a data input of any step: the run would
list its own files as input. Folders parajob makes inside the run folder (``download``
copies, ``<run>/datastores/<ds>``) lie the other way round and are fine.

Outputs without a ``path:`` go to ``<run>/<step>/outputs/<name>``, which the run owns, and
are not checked. Paths are compared as real paths (symlinks resolved, as far as they
exist), so a symlink to the data is the data. Nothing is created or written here.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from parajob.spec.model import ParallelStep, Pipeline, Step
from parajob.spec.report import Reporter, shown_path

__all__ = ["check_output_places", "RUN_RECORD", "LOCK_NAME", "STEP_OWN"]

# Parajob's own files in the run folder (runner.RUN_RECORD, run_folder.LOCK_NAME; kept equal
# by tests/test_places_misuse.py: spec must not import the runtime).
RUN_RECORD = "parajob-run.json"
LOCK_NAME = ".parajob.lock"
STEP_OWN = ("logs", "sys")  # <run>/<step>/logs, <run>/<step>/sys

_HINT = (
    "give the output a path of its own, or leave out its path: (it then goes to "
    "<run>/<step>/outputs/<name>)"
)


@dataclass(frozen=True)
class _Place:
    """A path the run reads or writes, with what to call it in a message."""

    path: Path  # real path
    what: str  # "input 'data' of step 'score'", "the code folder of step 'score'"
    step: str
    key: str  # the field inside the step, e.g. "outputs.out"
    kind: str = ""  # an output's type (uri_file: the path is the file, not its folder)


def check_output_places(r: Reporter, pipeline: Pipeline, run_dir: Path | None = None) -> None:
    """Record an error for each output with a ``path:`` that breaks a rule above, and for
    each input the run folder ``run_dir`` (when given) is or lies inside."""
    reads = list(_reads(pipeline))
    if run_dir is not None:
        _check_run_folder(r, pipeline, _real(run_dir), reads)
        reads += _run_folder_own(pipeline, _real(run_dir))
    outputs = list(_outputs(pipeline))
    for i, out in enumerate(outputs):
        step = pipeline.jobs[out.step]
        clash = next(
            (
                (p, rel)
                for p in reads + outputs[:i]
                if (rel := _relation(out.path, p.path)) is not None
            ),
            None,
        )
        if clash is not None:
            place, relation = clash
            where = "" if relation == "is" else f" ({shown_path(place.path)})"
            _error(
                r,
                pipeline,
                step,
                out.key,
                f"output path {shown_path(out.path)} {relation} {place.what}{where}",
                _hint(out, place, relation),
            )
            continue
        problem = _not_creatable(out.path, out.kind)
        if problem is not None:
            _error(
                r,
                pipeline,
                step,
                out.key,
                f"output path {shown_path(out.path)} cannot be created: {problem}",
                "give a path in a folder you can write to",
            )


def _check_run_folder(
    r: Reporter, pipeline: Pipeline, run_dir: Path, reads: Iterable[_Place]
) -> None:
    for place in reads:
        if not place.key.startswith("inputs."):
            continue
        relation = _relation(run_dir, place.path)
        if relation in ("is", "lies inside"):
            where = "" if relation == "is" else f" ({shown_path(place.path)})"
            _error(
                r,
                pipeline,
                pipeline.jobs[place.step],
                place.key,
                f"the run folder {shown_path(run_dir)} {relation} {place.what}{where}: the "
                "run would read its own files as input",
                "choose a --run-dir outside the input (a run without --run-dir goes to "
                "./runs/<pipeline>-<time> in the current folder)",
            )


def _run_folder_own(pipeline: Pipeline, run_dir: Path) -> Iterator[_Place]:
    """Parajob's own files in the run folder, which no output may be, hold or lie in."""
    for name in (RUN_RECORD, LOCK_NAME):
        yield _Place(run_dir / name, f"parajob's {name} in the run folder", "", "run." + name)
    for step in pipeline.jobs:
        for own in STEP_OWN:
            yield _Place(
                run_dir / step / own, f"parajob's {own} folder of step '{step}'", step, f"run.{own}"
            )


def _hint(out: _Place, place: _Place, relation: str) -> str:
    if place.key.startswith("run."):
        return (
            "parajob-run.json, .parajob.lock and <run>/<step>/logs and sys are parajob's "
            "own; " + _HINT
        )
    if place.key.startswith("task.") and relation != "contains":
        return (
            "the code folder holds the entry script and the modules it imports, and no "
            "output may be written into it; " + _HINT
        )
    if place.key.startswith("inputs.") and place.step != out.step:
        output = out.key.removeprefix("outputs.")
        return (
            f"if step '{place.step}' reads what step '{out.step}' writes, bind the input "
            f"to it: ${{{{parent.jobs.{out.step}.outputs.{output}}}}}; otherwise {_HINT}"
        )
    return _HINT


def _reads(pipeline: Pipeline) -> Iterator[_Place]:
    """What the run reads and must not write: data inputs, code folders, the YAML files."""
    for name, step in pipeline.jobs.items():
        for inp in step.inputs.values():
            source = inp.origin or inp.path
            if inp.is_literal or inp.producer is not None or source is None:
                continue
            yield _Place(
                _real(source), f"input '{inp.name}' of step '{name}'", name, f"inputs.{inp.name}"
            )
        if isinstance(step, ParallelStep):  # the script first: "is the entry script"
            yield _Place(
                _real(step.task.entry_path),
                f"the entry script of step '{name}'",
                name,
                "task.entry_script",
            )
            yield _Place(
                _real(step.task.code), f"the code folder of step '{name}'", name, "task.code"
            )
        if step.component is not None:
            yield _Place(
                _real(step.component), f"the component file of step '{name}'", name, "component"
            )
    yield _Place(_real(pipeline.file), "the pipeline file", "", "file")


def _outputs(pipeline: Pipeline) -> Iterator[_Place]:
    for name, step in pipeline.jobs.items():
        for out in step.outputs.values():
            if out.path is not None:
                yield _Place(
                    _real(out.path),
                    f"output '{out.name}' of step '{name}'",
                    name,
                    f"outputs.{out.name}",
                    out.type,
                )


def _real(path: Path) -> Path:
    return Path(os.path.realpath(path))


def _relation(output: Path, other: Path) -> str | None:
    if output == other:
        return "is"
    if other.is_relative_to(output):
        return "contains"
    if output.is_relative_to(other):
        return "lies inside"
    return None


def _not_creatable(path: Path, kind: str) -> str | None:
    """Why the output's folder cannot be made or written, or None (it can, as far as one
    can tell without writing). Root passes every ``os.access`` check, so the file system of
    the nearest existing folder is looked at too: read-only, procfs and sysfs refuse mkdir."""
    folder = path.parent if kind == "uri_file" else path
    probe = folder
    while not os.path.lexists(probe) and probe != probe.parent:
        probe = probe.parent
    if not probe.is_dir():
        return f"{probe} is {'a file' if probe.exists() else 'a broken link'}, not a folder"
    if not os.access(probe, os.W_OK | os.X_OK):
        return f"{probe} is not writable"
    try:
        if os.statvfs(probe).f_flag & os.ST_RDONLY:
            return f"{probe} is on a read-only file system"
        device = os.stat(probe).st_dev
    except OSError as exc:
        return f"{probe} cannot be examined: {exc.strerror or exc}"
    for pseudo in ("/proc", "/sys"):
        try:
            if os.stat(pseudo).st_dev == device:
                return f"{probe} is on the {pseudo} pseudo file system, where no folder can be made"
        except OSError:
            continue  # no /proc or /sys here: nothing to compare with
    return None


def _error(r: Reporter, pipeline: Pipeline, step: Step, key: str, message: str, hint: str) -> None:
    """An error at the output's ``path:`` (or the output, when bound to a pipeline output),
    in the file it is written in."""
    at = f"{key}.path" if f"{key}.path" in step.locations else key
    file, line, column = step.where(at)
    name = next((s.name for s in r.sources.values() if s.path == file), shown_path(file))
    if name not in r.sources:
        line = column = None
    r.error((name, line, column), pipeline.field_path(step.name, at), message, hint)
