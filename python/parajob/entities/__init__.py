"""Pipeline entities as the Azure ML SDK v2 has them, built in Python or read from YAML.

Modules, in the order data flows through them:

    io            Input, Output (the SDK's parameters and messages); node ports
    settings      Environment, RetrySettings, JobResourceConfiguration, PipelineJobSettings
    nodes         Parallel and Command nodes: call to bind inputs, set fields as in the SDK
    render        a node's ports as YAML values (bindings, declarations, literals)
    command_func  parajob.command(...)
    components    parajob.load_component(source=...): a component file as a node
    pipeline      Pipeline: to_yaml(), dump(path), equality on a normalised form
    paths         the local paths of the YAML mapping, rebased when the file moves
    loading       parajob.load: YAML (validated by parajob.spec) -> Pipeline

``parajob.parallel`` (parallel_run_function, RunFunction) and ``parajob.dsl`` (the pipeline
decorator) build on these. Nothing here runs a job: ``parajob run`` (or ``parajob.run``)
runs the YAML an entity dumps. This package imports neither ``parajob._core`` nor the
runtime, so building a pipeline is cheap.
"""

from __future__ import annotations

from parajob.entities.command_func import command
from parajob.entities.components import load_component
from parajob.entities.io import Input, Output
from parajob.entities.loading import load
from parajob.entities.nodes import Command, Parallel, RunFunction
from parajob.entities.pipeline import Pipeline
from parajob.entities.settings import (
    Environment,
    JobResourceConfiguration,
    PipelineJobSettings,
    ResourceConfiguration,
    RetrySettings,
)

PipelineJob = Pipeline  # the SDK's name for it

__all__ = [
    "Command",
    "Environment",
    "Input",
    "JobResourceConfiguration",
    "Output",
    "Parallel",
    "Pipeline",
    "PipelineJob",
    "PipelineJobSettings",
    "ResourceConfiguration",
    "RetrySettings",
    "RunFunction",
    "command",
    "load",
    "load_component",
]
