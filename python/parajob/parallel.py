"""``parajob.parallel``: the Azure ML SDK's parallel builder, for local runs.

    from parajob.parallel import parallel_run_function, RunFunction

Same names, parameters and defaults as ``azure.ai.ml.parallel``; a script written for Azure
runs here with only its imports changed. :func:`parallel_run_function` returns a
:class:`~parajob.entities.nodes.Parallel` node that is also a component: call it inside a
``@parajob.dsl.pipeline`` function to bind its inputs.
"""

from __future__ import annotations

from typing import Any

from parajob.entities.nodes import Parallel, RunFunction
from parajob.entities.settings import JobResourceConfiguration, RetrySettings, check_type
from parajob.errors import ValidationError

__all__ = ["parallel_run_function", "RunFunction", "Parallel", "RetrySettings"]


def parallel_run_function(
    *,
    name: str | None = None,
    description: str | None = None,
    tags: dict[str, str] | None = None,
    properties: dict[str, Any] | None = None,
    display_name: str | None = None,
    experiment_name: str | None = None,
    compute: str | None = None,
    retry_settings: RetrySettings | dict[str, Any] | None = None,
    environment_variables: dict[str, str] | None = None,
    logging_level: str | None = None,
    max_concurrency_per_instance: int | None = None,
    error_threshold: int | None = None,
    mini_batch_error_threshold: int | None = None,
    task: RunFunction | None = None,
    mini_batch_size: str | None = None,
    partition_keys: list[str] | None = None,
    input_data: str | None = None,
    inputs: dict[str, Any] | None = None,
    outputs: dict[str, Any] | None = None,
    instance_count: int | None = None,
    instance_type: str | None = None,
    docker_args: str | None = None,
    shm_size: str | None = None,
    identity: dict[str, Any] | None = None,
    is_deterministic: bool = True,
    **kwargs: Any,
) -> Parallel:
    """A parallel node (and component), as ``azure.ai.ml.parallel.parallel_run_function``.

    Every setting the SDK takes is accepted and written to the step's YAML. Those a cluster
    needs (``instance_type``, ``docker_args``, ``shm_size``, ``identity``, ``compute``) have
    no effect here, as in a hand-written YAML; ``task.model`` is refused when the YAML is
    validated, as there. ``name`` names the component (and anonymous nodes in a pipeline);
    a node made by calling it is named after the variable it is assigned to.
    Raises :class:`~parajob.errors.ValidationError` with the SDK's message for a value of
    the wrong type or a malformed ``mini_batch_size``.
    """
    check_type("task", task, RunFunction)
    if task is None:
        raise ValidationError(
            "parallel_run_function() needs task=RunFunction(code=..., "
            "entry_script=...): the script whose run() gets the "
            "mini-batches",
            "task",
        )
    unknown = sorted(set(kwargs) - {"component"})
    if unknown:
        raise ValidationError(
            f"parallel_run_function() got an unexpected keyword argument {unknown[0]!r}", unknown[0]
        )
    resources = JobResourceConfiguration(
        instance_count=instance_count,
        instance_type=instance_type,
        docker_args=docker_args,
        shm_size=shm_size,
    )
    return Parallel(
        name=name,
        description=description,
        tags=tags,
        properties=properties,
        display_name=display_name,
        experiment_name=experiment_name,
        compute=compute,
        inputs=inputs,
        outputs=outputs,
        retry_settings=retry_settings,
        environment_variables=environment_variables,
        logging_level=logging_level,
        max_concurrency_per_instance=max_concurrency_per_instance,
        error_threshold=error_threshold,
        mini_batch_error_threshold=mini_batch_error_threshold,
        task=task,
        mini_batch_size=mini_batch_size,
        partition_keys=partition_keys,
        input_data=input_data,
        resources=resources,
        identity=identity,
        is_deterministic=is_deterministic,
        component=kwargs.get("component"),
    )
