"""The loaded pipeline: frozen dataclasses, every value validated and every path absolute.

Invariants the runtime may rely on once :func:`~parajob.spec.load_pipeline` returned:

* every data input has an absolute ``path`` that existed at load time (or, later, a
  producing step); literal inputs have ``value`` set and ``path`` None;
* ``ParallelStep.input_data`` names a data input of that step; ``task.append_row_to``, when
  set, names an output of that step;
* ``task.code`` is an existing folder and ``code / entry_script`` an existing ``.py`` file;
* ``task.argv`` is ``program_arguments`` bound and shell-split; outputs without a path are
  bound to ``<run_dir>/<step>/outputs/<name>`` when ``run_dir`` was given, else left as the
  literal text ``${{outputs.<name>}}`` (see :func:`~parajob.spec.bindings.default_output_path`).

Fields recorded but not acted on locally (``compute``, ``task.environment``, ``tags``, ...)
keep what the file said.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from parajob.errors import Diagnostic
from parajob.spec.arguments import RuntimeArgs
from parajob.spec.sizes import MiniBatchSize

__all__ = ["Input", "Output", "RetrySettings", "Task", "ParallelStep", "Step", "Pipeline",
           "MiniBatchSize", "RuntimeArgs"]


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

    @property
    def data_input(self) -> Input:
        """The input that is split into mini-batches."""
        return self.inputs[self.input_data]


Step = ParallelStep  # a later issue makes this ParallelStep | CommandStep


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
