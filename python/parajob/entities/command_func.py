"""``parajob.command(...)``: a command node, as ``azure.ai.ml.command``.

A command step prepares data for a parallel step in most real pipelines
(docs/contract.md §1.1): it runs ``command`` by a shell in a copy of ``code``, with
``${{inputs.x}}``/``${{outputs.y}}`` bound. Inputs given here are declarations and values at
once (an ``Input`` with a path, a literal); calling the node binds them anew:
``prep(raw=other.outputs.data)``.
"""

from __future__ import annotations

from typing import Any

from parajob.entities.nodes import Command
from parajob.entities.settings import Environment, JobResourceConfiguration
from parajob.errors import ValidationError

__all__ = ["command"]

# Accepted as the SDK does, written to the YAML; parajob runs the step locally regardless.
_KEPT = ("distribution", "services", "queue_settings", "job_tier", "priority")


def command(
    *,
    name: str | None = None,
    description: str | None = None,
    tags: dict[str, str] | None = None,
    properties: dict[str, Any] | None = None,
    display_name: str | None = None,
    command: str | None = None,
    experiment_name: str | None = None,
    environment: Environment | str | None = None,
    environment_variables: dict[str, str] | None = None,
    distribution: dict[str, Any] | None = None,
    compute: str | None = None,
    inputs: dict[str, Any] | None = None,
    outputs: dict[str, Any] | None = None,
    instance_count: int | None = None,
    instance_type: str | None = None,
    locations: list[str] | None = None,
    docker_args: str | None = None,
    shm_size: str | None = None,
    timeout: int | None = None,
    code: str | None = None,
    identity: dict[str, Any] | None = None,
    is_deterministic: bool = True,
    **kwargs: Any,
) -> Command:
    """A command node (and component). ``timeout`` becomes ``limits.timeout`` (seconds);
    ``instance_count`` and the other resource settings go to ``resources``. Raises
    :class:`~parajob.errors.ValidationError` with the SDK's message for a value of the wrong
    type."""
    unknown = sorted(set(kwargs) - set(_KEPT))
    if unknown:
        raise ValidationError(
            f"command() got an unexpected keyword argument {unknown[0]!r}", unknown[0]
        )
    node = Command(
        name=name,
        description=description,
        tags=tags,
        properties=properties,
        display_name=display_name,
        command=command,
        experiment_name=experiment_name,
        environment=environment,
        environment_variables=environment_variables,
        distribution=distribution,
        compute=compute,
        inputs=inputs,
        outputs=outputs,
        resources=JobResourceConfiguration(
            instance_count=instance_count,
            instance_type=instance_type,
            locations=locations,
            docker_args=docker_args,
            shm_size=shm_size,
        ),
        limits=None if timeout is None else {"timeout": timeout},
        code=code,
        identity=identity,
        is_deterministic=is_deterministic,
    )
    node.extra.update({k: v for k, v in kwargs.items() if k != "distribution"})
    return node
