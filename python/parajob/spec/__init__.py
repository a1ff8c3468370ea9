"""Pipeline YAML -> frozen dataclasses, with compiler-like messages for bad input.

Entry point: :func:`load_pipeline`. Modules, in the order data flows through them:

    yaml_nodes  compose with positions, duplicate keys, typed getters
    report      Reporter: diagnostics with file:line:column, "did you mean"; several files
    schema      accepted keys and enumerations
    load        the file: pipeline or single job; steps read producers first
    overrides   --set KEY=VALUE edits of the node tree
    graph       the steps' dependency graph (${{parent.jobs...}}), order, cycles
    component   component files: ports, and merging with the node
    places      datastores, ${{name}} and the other output path templates
    scope       the reading state of a step; local paths (made absolute and checked)
    ports       inputs
    outputs     outputs
    parallel    one type: parallel step
    command     one type: command step
    task        task: entry script, program arguments, environment
    commandline binding program_arguments / command text, $[[...]] optional blocks
    bindings    ${{...}} expressions
    arguments   runtime flags in program_arguments (RuntimeArgs)
    sizes       mini_batch_size
    mltable     a light structural check of MLTable files
    model       the dataclasses

This package does not import ``parajob._core`` and never imports the user's entry script.
"""

from __future__ import annotations

from parajob.spec.arguments import RuntimeArgs, parse_program_arguments
from parajob.spec.bindings import default_output_path
from parajob.spec.load import load_pipeline
from parajob.spec.model import (
    CommandStep,
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
    "CommandStep",
    "DEFAULT_BYTES_PER_BATCH",
    "DEFAULT_FILES_PER_BATCH",
    "Input",
    "MiniBatchSize",
    "Output",
    "ParallelStep",
    "Pipeline",
    "RetrySettings",
    "RuntimeArgs",
    "Step",
    "Task",
    "default_output_path",
    "load_pipeline",
    "parse_mini_batch_size",
    "parse_program_arguments",
]
