"""The loaded pipeline: frozen dataclasses, every value validated and every path absolute.

Invariants the runtime may rely on once :func:`~parajob.spec.load_pipeline` returned:

* every data input has an absolute ``path`` that existed at load time, or a ``producer``
  (the step and output it comes from; its ``path`` is that output's, None when no run folder
  was given); literal inputs have ``value`` set and ``path`` None; an optional input the
  pipeline does not give has ``provided`` False and neither;
* an input in ``download`` mode has ``origin`` (the data) and ``path`` (the copy the step
  sees, under ``<run>/<step>/inputs/``), when a run folder was given; the runner copies;
* ``Pipeline.order`` lists every step after the steps it depends on (``depends_on``: the
  producers of its ``${{parent.jobs.<step>.outputs.<out>}}`` inputs);
* ``ParallelStep.input_data`` names a data input of that step; ``task.append_row_to``, when
  set, names an output of that step;
* ``task.code`` is an existing folder and ``code / entry_script`` an existing ``.py`` file;
* ``task.argv`` is ``program_arguments`` bound and shell-split; outputs without a path are
  bound to ``<run_dir>/<step>/outputs/<name>`` when ``run_dir`` was given, else left as the
  literal text ``${{outputs.<name>}}`` (see :func:`~parajob.spec.bindings.default_output_path`).

Fields recorded but not acted on locally (``compute``, ``task.environment``, ``tags``, ...)
keep what the file said. ``locations`` holds (line, column) of each field for messages the
runtime writes; fields written in another file (a component) have it in ``location_files``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from parajob.errors import Diagnostic
from parajob.spec.arguments import RuntimeArgs
from parajob.spec.sizes import MiniBatchSize

__all__ = [
    "Input",
    "Output",
    "RetrySettings",
    "Task",
    "ParallelStep",
    "CommandStep",
    "Step",
    "Pipeline",
    "MiniBatchSize",
    "RuntimeArgs",
]


@dataclass(frozen=True)
class Input:
    """A pipeline or step input: data (``uri_folder``/``uri_file``/``mltable``) or a literal.

    ``mode`` is ``ro_mount`` by default; literal inputs get ``direct`` (nothing to move).
    ``value`` is the literal as text (``5``, ``0.5``, ``True``, ``abc``); None for data.
    """

    name: str
    type: str
    path: Path | None
    mode: str = "ro_mount"
    value: str | None = None
    optional: bool = False
    provided: bool = True  # False: an optional input nobody gave ($[[...]] blocks vanish)
    origin: Path | None = None  # download mode: the data that is copied to ``path``
    producer: tuple[str, str] | None = None  # (step, output) for ${{parent.jobs...}}

    @property
    def is_literal(self) -> bool:
        return self.type in ("string", "integer", "number", "boolean")


@dataclass(frozen=True)
class Output:
    """A pipeline or step output. ``path`` None: the runtime picks
    ``<run>/<step>/outputs/<name>`` (a file for ``uri_file``, a folder otherwise)."""

    name: str
    type: str = "uri_folder"
    path: Path | None = None
    mode: str = "rw_mount"
    written: str | None = None  # ``path:`` as written, when it held bindings or a datastore


@dataclass(frozen=True)
class RetrySettings:
    """``max_retries`` retries after the first try (2 -> 3 tries); ``timeout`` seconds per
    ``run()`` call, in (0, 259200]."""

    max_retries: int = 2
    timeout: int = 60


@dataclass(frozen=True, kw_only=True)
class Task:
    type: str
    code: Path
    entry_script: str
    program_arguments: str = ""
    argv: tuple[str, ...] = ()
    append_row_to: str | None = None
    environment: dict[str, Any] | str | None = None
    conda_file: Path | None = None  # environment.conda_file, absolute (recorded, checked)

    @property
    def entry_path(self) -> Path:
        """The entry script's absolute path."""
        return self.code / self.entry_script


@dataclass(frozen=True, kw_only=True)
class ParallelStep:
    """One ``type: parallel`` step.

    The fields hold what the YAML fields said (or their defaults). Settings that Azure also
    accepts as program arguments (``--error_threshold``, ``--logging_level``, ...) are in
    ``runtime_args`` as given there. On Azure the program argument wins when both are given
    (it comes last on the runtime's command line); the loader warns when they disagree.
    """

    name: str
    type: str = "parallel"
    file: Path
    line: int
    inputs: dict[str, Input]
    outputs: dict[str, Output]
    input_data: str
    mini_batch_size: MiniBatchSize | None = None  # None: 10 files / 1mb (sizes.DEFAULT_*)
    partition_keys: tuple[str, ...] | None = None
    instance_count: int = 1
    max_concurrency_per_instance: int | None = None  # None: the runtime decides
    mini_batch_error_threshold: int = -1
    error_threshold: int = -1
    retry_settings: RetrySettings = field(default_factory=RetrySettings)
    logging_level: str = "INFO"
    environment_variables: dict[str, str] = field(default_factory=dict)
    task: Task
    compute: str | None = None  # as written; fall back to Pipeline.default_compute
    display_name: str | None = None
    description: str | None = None
    tags: dict[str, str] = field(default_factory=dict)
    runtime_args: RuntimeArgs = field(default_factory=RuntimeArgs)
    # 1-based (line, column) of each field's value, keyed by the field's dotted path inside
    # the step ("task.entry_script", "inputs.model.path"), for messages about the step
    # that only the runtime can detect (an entry script that fails to import, ...).
    locations: dict[str, tuple[int, int]] = field(default_factory=dict)
    location_files: dict[str, Path] = field(default_factory=dict)
    depends_on: tuple[str, ...] = ()
    component: Path | None = None  # the component file the step names, if any

    @property
    def data_input(self) -> Input:
        """The input that is split into mini-batches."""
        return self.inputs[self.input_data]

    def where(self, key: str) -> tuple[Path, int | None, int | None]:
        """(file, line, column) of a field, for messages; the step's line when unknown."""
        line, column = self.locations.get(key, (self.line, None))
        return self.location_files.get(key, self.file), line, column


@dataclass(frozen=True, kw_only=True)
class CommandStep:
    """One ``type: command`` step: ``command`` run by a shell in a copy of ``code``.

    ``command`` is bound (inputs, outputs, ``$[[...]]`` blocks resolved); outputs with no path
    stay as written when no run folder was given. ``timeout`` is ``limits.timeout``.
    """

    name: str
    type: str = "command"
    file: Path
    line: int
    inputs: dict[str, Input]
    outputs: dict[str, Output]
    command: str
    code: Path | None = None
    environment_variables: dict[str, str] = field(default_factory=dict)
    environment: dict[str, Any] | str | None = None
    conda_file: Path | None = None
    timeout: int | None = None
    additional_includes: tuple[Path, ...] = ()  # a component's extra files, copied with code
    compute: str | None = None
    display_name: str | None = None
    description: str | None = None
    tags: dict[str, str] = field(default_factory=dict)
    locations: dict[str, tuple[int, int]] = field(default_factory=dict)
    location_files: dict[str, Path] = field(default_factory=dict)
    depends_on: tuple[str, ...] = ()
    component: Path | None = None

    def where(self, key: str) -> tuple[Path, int | None, int | None]:
        line, column = self.locations.get(key, (self.line, None))
        return self.location_files.get(key, self.file), line, column


Step = ParallelStep | CommandStep


@dataclass(frozen=True, kw_only=True)
class Pipeline:
    file: Path
    display_name: str | None = None
    description: str | None = None
    tags: dict[str, str] = field(default_factory=dict)
    default_compute: str | None = None
    inputs: dict[str, Input] = field(default_factory=dict)
    outputs: dict[str, Output] = field(default_factory=dict)
    jobs: dict[str, Step] = field(default_factory=dict)
    warnings: list[Diagnostic] = field(default_factory=list)
    name: str | None = None
    experiment_name: str | None = None
    compute: str | None = None
    order: tuple[str, ...] = ()  # the steps in the order they run (dependencies first)
    default_datastore: str = "workspaceblobstore"
    continue_on_step_failure: bool = False
    single_job: bool = False  # the file was one job (type: parallel / command at the top)

    def field_path(self, step: str, key: str) -> str:
        """A step field's dotted path as messages show it (``jobs.<step>.<key>``)."""
        return key if self.single_job else f"jobs.{step}.{key}"

    def run_order(self) -> list[str]:
        """Step names, producers before consumers (YAML order when ``order`` is unset)."""
        return list(self.order) if self.order else list(self.jobs)
