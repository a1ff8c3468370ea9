"""Pipeline YAML -> frozen dataclasses, with compiler-like messages for bad input.

Entry point: :func:`load_pipeline`. Modules, in the order data flows through them:

    yaml_nodes  compose with positions, duplicate keys, typed getters
    report      Reporter: diagnostics with file:line:column, "did you mean"
    schema      accepted keys and enumerations
    load        the file: pipeline or single parallel job
    ports       inputs and outputs (paths made absolute and checked)
    parallel    one type: parallel step
    task        task: entry script, program arguments (bindings, runtime flags)
    bindings    ${{...}} expressions
    arguments   runtime flags in program_arguments (RuntimeArgs)
    sizes       mini_batch_size
    model       the dataclasses

This package does not import ``parajob._core`` and never imports the user's entry script.
"""

from __future__ import annotations

from parajob.spec.arguments import RuntimeArgs, parse_program_arguments
from parajob.spec.bindings import default_output_path
from parajob.spec.load import load_pipeline
from parajob.spec.model import (
    Input,
    Output,
    ParallelStep,
    Pipeline,
    RetrySettings,
    Step,
    Task,
)
from parajob.spec.sizes import (
    DEFAULT_BYTES_PER_BATCH,
    DEFAULT_FILES_PER_BATCH,
    MiniBatchSize,
    parse_mini_batch_size,
)

__all__ = [
    "DEFAULT_BYTES_PER_BATCH", "DEFAULT_FILES_PER_BATCH", "Input", "MiniBatchSize", "Output",
    "ParallelStep", "Pipeline", "RetrySettings", "RuntimeArgs", "Step", "Task",
    "default_output_path", "load_pipeline", "parse_mini_batch_size", "parse_program_arguments",
]
