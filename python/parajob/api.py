"""parajob as a library: ``parajob.run``.

    parajob.run(pipeline | "pipeline.yml" | None, run_dir=..., resume=..., cancel=..., ...)
        |  checks its arguments (SpecError naming the parameter)
        v
    RunRequest + RunOptions(handle_signals=False) --> runtime.run.execute (the run's owner)
        |  claim folder, load, preflight, record, run steps    (blocks the calling thread)
        v
    RunResult (also <run>/run_result.json; each step's logs/job_result.json)

Invariants a host can rely on:
- Bad input raises :class:`parajob.SpecError` (``str()`` is what ``parajob run`` prints:
  file, line, field, hint) before any step starts, leaving no folder it made; a job that
  runs and fails *returns* a RunResult whose ``status`` says so.
- Any thread may call it, any number of times (calls of several threads queue: one run
  at a time per process, runtime/run.py): parajob installs no signal handler, keeps the
  host's ``gc.freeze()`` state, and leaves no process, thread, descriptor, memfd or
  shared-memory mapping behind (tests/test_api_hygiene.py).
- ``quiet=True`` writes nothing to stdout/stderr (warnings go to the ``parajob`` logger).
"""

from __future__ import annotations

import os
import sys
import threading
from collections.abc import Callable, Iterable, Mapping
from contextlib import nullcontext
from pathlib import Path
from typing import Any, NoReturn, Protocol, runtime_checkable

from parajob import terminal
from parajob.errors import Diagnostic, SpecError
from parajob.results import RunResult
from parajob.runtime.computes import check_address
from parajob.runtime.options import ProgressEvent, RunOptions, not_a_cancel_event
from parajob.runtime.run import RunRequest, execute, parse_memory_size

__all__ = ["run", "PipelineEntity"]


@runtime_checkable
class PipelineEntity(Protocol):
    """What ``parajob.run`` needs of a pipeline built in Python (``parajob.load`` or the
    SDK builder): it writes itself as YAML that ``parajob run`` accepts from that place."""

    def dump(self, path: Any) -> Any: ...


def run(
    pipeline: PipelineEntity | str | os.PathLike[str] | None = None,
    *,
    run_dir: str | os.PathLike[str] | None = None,
    resume: bool = False,
    rerun_changed: bool = False,
    serial: bool = False,
    on_progress: Callable[[ProgressEvent], Any] | None = None,
    quiet: bool = True,
    cancel: threading.Event | None = None,
    set: Iterable[str] | str = (),  # the CLI's --set, by name (shadows set() here)
    datastores: Mapping[str, str | os.PathLike[str]] | None = None,
    max_tasks_per_worker: int | None = None,
    max_worker_memory: int | str | None = None,
    compute: Mapping[str, str] | None = None,
    isolate_failures: int | None = None,
    skip_items: str | os.PathLike[str] | None = None,
) -> RunResult:
    """Run a pipeline on this machine, as ``parajob run`` does, and return how it ended.

    pipeline
        A pipeline YAML path, or a ``parajob.Pipeline`` (``parajob.load``, the SDK builder;
        it is written to ``<run>/parajob-pipeline.yml``, which a later resume reads).
        None with ``resume=True``: the run folder's own pipeline.
    run_dir
        The run folder (default: a new ``./runs/<pipeline name>-<time>``). Held
        exclusively while the run goes (``SpecError`` "in use" for a second caller).
    resume, rerun_changed
        Finish the run in ``run_dir`` (``parajob run --resume``): only mini-batches not yet
        accepted run; a changed input or code is refused unless ``rerun_changed``.
    serial
        ``init``/``run``/``shutdown`` in the calling process, one mini-batch at a time, so
        ``breakpoint()`` works (``--serial``).
    on_progress
        Called with a ``ProgressEvent`` of a parallel step's counts now and then (at most
        every 0.2 s) and once with ``final=True`` at its end, in the calling thread. One
        that raises is not called again for that step; the run goes on. It runs between
        the engine's turns: keep it quick (hand slow work to another thread).
    quiet
        True (default): nothing on stdout/stderr. False: progress, warnings and each
        step's summary on stderr, as the CLI shows them.
    cancel
        A ``threading.Event``: set it (from any thread, a signal handler, a timer) to stop
        the run within a fraction of a second. The result's status is then
        ``"cancelled"`` and the folder resumable (``resume=True, run_dir=...``).
    set, datastores
        ``--set KEY=VALUE`` overrides (added after a Pipeline's own) and
        ``--datastore NAME=PATH`` folders.
    max_tasks_per_worker, max_worker_memory
        Replace a worker after that many mini-batches, or once its memory exceeds that
        (bytes, or a size like ``"2gb"``).
    compute
        ``{compute name: Dask scheduler address}`` (``--compute NAME=ADDRESS``): steps
        whose ``compute`` is mapped run their ``instance_count`` nodes on that cluster
        (``pip install "parajob[dask]"``); the others on this machine.
    isolate_failures, skip_items
        ``--isolate-failures N``: bisect each mini-batch whose retries are spent and
        quarantine up to N of its items (each step's ``logs/quarantine.csv``, and
        ``StepResult.quarantined``); 0 off; None: each step's ``--isolate_failures``
        program argument. ``--skip-items``: a quarantine.csv whose items are left out.

    Blocks until the run ends. Raises :class:`parajob.SpecError` for bad input (nothing
    started); a job that ran and failed returns a RunResult with ``status == "failed"``.
    Safe to call from any thread, many times; calls from several threads of one process
    run one after the other. No signal handler is installed: a KeyboardInterrupt in the
    calling thread comes out of the run once its workers are stopped (then resume).
    """
    options = RunOptions(
        resume=_flag("resume", resume),
        rerun_changed=_flag("rerun_changed", rerun_changed),
        max_tasks_per_worker=_count("max_tasks_per_worker", max_tasks_per_worker),
        max_worker_memory_bytes=_memory("max_worker_memory", max_worker_memory),
        serial=_flag("serial", serial),
        cancel=_event(cancel),
        on_progress=_callable("on_progress", on_progress),
        quiet=_flag("quiet", quiet),
        handle_signals=False,  # the host's handlers are the host's
        computes=_computes(compute, serial),
        isolate_failures=_count("isolate_failures", isolate_failures, low=0),
        skip_items=None if skip_items is None else _path("skip_items", skip_items),
    )
    request = _request(pipeline, run_dir, options, _overrides(set), datastores)
    show = None if quiet else sys.stderr
    with terminal.muted() if quiet else nullcontext():
        finished = execute(request, warn=lambda text: terminal.echo(str(text), err=True))
    for outcome in finished.outcomes:
        terminal.write(show, outcome.summary())
    return finished.result


def _request(
    pipeline: object,
    run_dir: object,
    options: RunOptions,
    overrides: tuple[str, ...],
    datastores: object,
) -> RunRequest:
    """The run's request from run()'s arguments; SpecError naming the one that is wrong."""
    folders = _folders(datastores)
    folder = _path("run_dir", run_dir) if run_dir is not None else None
    if pipeline is None:
        return RunRequest(None, folder, options, overrides, folders)
    if isinstance(pipeline, (str, os.PathLike)):
        text = os.fspath(pipeline)
        if isinstance(text, str) and "\n" in text:
            _bad(
                "pipeline",
                "expected a pipeline YAML path or a parajob.Pipeline, found YAML text",
                "parajob.run(parajob.load(text)) runs a pipeline given as text",
            )
        return RunRequest(_path("pipeline", pipeline), folder, options, overrides, folders)
    if isinstance(pipeline, PipelineEntity):
        # The entity's own --set and --datastore first; the call's win (they come later).
        own_sets = tuple(str(s) for s in getattr(pipeline, "overrides", ()) or ())
        own_folders = _folders(getattr(pipeline, "datastores", None))
        name = getattr(pipeline, "name", None)
        return RunRequest(
            None,
            folder,
            options,
            own_sets + overrides,
            {**own_folders, **folders},
            dump=pipeline.dump,
            name=name if isinstance(name, str) and name else None,
        )
    _bad(
        "pipeline",
        f"expected a pipeline YAML path or a parajob.Pipeline, found {type(pipeline).__name__}",
        "parajob.load(path) gives a parajob.Pipeline",
    )


def _bad(parameter: str, message: str, hint: str | None = None) -> NoReturn:
    raise SpecError([Diagnostic("parajob.run", None, None, parameter, message, hint)])


def _flag(name: str, value: object) -> bool:
    if not isinstance(value, bool):
        _bad(name, f"expected True or False, found {value!r}")
    return bool(value)


def _count(name: str, value: object, low: int = 1) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        _bad(name, f"expected a whole number of at least {low}, found {value!r}")
    return value


def _memory(name: str, value: object) -> int | None:
    if value is None:
        return None
    if isinstance(value, str):
        try:
            return parse_memory_size(value)
        except ValueError as exc:
            _bad(name, str(exc), "give bytes as an int, or a size like '512mb' or '2gb'")
    return _count(name, value)


def _computes(value: object, serial: object) -> dict[str, str]:
    if value is None:
        return {}
    hint = "compute={'cpu-cluster': 'tcp://10.0.0.5:8786'}"
    if not isinstance(value, Mapping) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in value.items()
    ):
        _bad(
            "compute",
            f"expected a mapping compute name -> scheduler address, found {value!r}",
            hint,
        )
    for name, address in value.items():
        if (why := check_address(name, address)) is not None:
            _bad("compute", why, hint)
    if value and serial is True:
        _bad(
            "compute",
            "serial=True runs everything in this process: it does not go with compute=",
            "drop one of the two",
        )
    return dict(value)


def _event(value: object) -> threading.Event | None:
    problem = not_a_cancel_event(value)
    if problem is not None:
        _bad(
            "cancel",
            problem,
            "cancel = threading.Event(); parajob.run(..., cancel=cancel); cancel.set()",
        )
    assert value is None or isinstance(value, threading.Event)
    return value


def _callable(name: str, value: object) -> Any:
    if value is not None and not callable(value):
        _bad(name, f"expected a function taking a ProgressEvent, found {value!r}")
    return value


def _overrides(value: object) -> tuple[str, ...]:
    items = (value,) if isinstance(value, str) else value
    if isinstance(items, Iterable):
        texts = tuple(items)
        if all(isinstance(s, str) for s in texts):
            return texts
    _bad(
        "set", f"expected KEY=VALUE texts, found {value!r}", "set=['jobs.score.mini_batch_size=5']"
    )


def _folders(value: object) -> dict[str, Path]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        _bad(
            "datastores",
            f"expected a mapping NAME -> folder, found {value!r}",
            "datastores={'workspaceblobstore': '/data/blob'}",
        )
    return {str(k): _path("datastores", v) for k, v in value.items()}


def _path(name: str, value: object) -> Path:
    if isinstance(value, (str, os.PathLike)) and os.fspath(value):
        return Path(os.fsdecode(value))
    _bad(name, f"expected a path, found {value!r}")
