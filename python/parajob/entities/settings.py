"""The small setting objects of nodes and pipelines, as in ``azure.ai.ml.entities``.

Each is a plain mutable object (the SDK's are: ``node.resources.instance_count = 2``) with
``_to_dict()`` giving its YAML mapping, None fields left out. ``from_value`` turns the dict
form the SDK also accepts (``retry_settings=dict(max_retries=2)``) into the object, and
rejects other types with the SDK's message ("Expecting ... for ..., got ... instead.").
"""

from __future__ import annotations

from typing import Any, TypeVar

from parajob.errors import ValidationError

__all__ = [
    "Environment",
    "RetrySettings",
    "JobResourceConfiguration",
    "ResourceConfiguration",
    "PipelineJobSettings",
    "check_type",
    "from_value",
]


def check_type(attr: str, value: object, expected: type | tuple[type, ...]) -> None:
    """The SDK's ``validate_attribute_type``: None passes, a wrong type is an error."""
    if value is not None and not isinstance(value, expected):
        raise ValidationError(f"Expecting {expected} for {attr}, got {type(value)} instead.", attr)


class _Settings:
    _KEYS: tuple[str, ...] = ()

    def __init__(self, **kwargs: Any) -> None:
        for key in self._KEYS:
            setattr(self, key, kwargs.pop(key, None))
        self.extra: dict[str, Any] = kwargs

    def __setattr__(self, name: str, value: Any) -> None:
        # A field the SDK has and this class does not model (settings.on_init) is kept
        # and written, so that validation names it, rather than being dropped.
        if name in self._KEYS or name == "extra" or name.startswith("_"):
            object.__setattr__(self, name, value)
        else:
            self.extra[name] = value

    def __getattr__(self, name: str) -> Any:  # only for names not found the usual way
        extra = self.__dict__.get("extra", {})
        if name in extra:
            return extra[name]
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    def _to_dict(self) -> dict[str, Any]:
        out = {k: getattr(self, k) for k in self._KEYS if getattr(self, k) is not None}
        out.update(self.extra)
        return out

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, _Settings)
            and type(other) is type(self)
            and self._to_dict() == other._to_dict()
        )

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self._to_dict()!r})"


S = TypeVar("S", bound=_Settings)


def from_value(attr: str, value: object, cls: type[S]) -> S | None:
    """``value`` as a ``cls``: None, a ``cls``, or the mapping of its keywords."""
    check_type(attr, value, (dict, cls))
    if isinstance(value, dict):
        return cls(**value)
    return value  # type: ignore[return-value]  # None or a cls, checked above


class RetrySettings(_Settings):
    """``retry_settings``: ``max_retries`` (default 2 on the service) and ``timeout``
    (seconds per ``run()`` call, default 60)."""

    _KEYS = ("max_retries", "timeout")
    max_retries: int | None
    timeout: int | None

    def __init__(
        self, *, max_retries: int | None = None, timeout: int | None = None, **kwargs: Any
    ) -> None:
        super().__init__(max_retries=max_retries, timeout=timeout, **kwargs)


class JobResourceConfiguration(_Settings):
    """``resources``: ``instance_count`` is the number of nodes parajob simulates; the
    others are recorded, not acted on."""

    _KEYS = (
        "instance_count",
        "instance_type",
        "properties",
        "docker_args",
        "shm_size",
        "max_instance_count",
        "locations",
    )
    instance_count: int | None
    instance_type: str | None
    properties: dict[str, Any] | None
    docker_args: str | None
    shm_size: str | None
    max_instance_count: int | None
    locations: list[str] | None

    def __init__(
        self,
        *,
        instance_count: int | None = None,
        instance_type: str | None = None,
        properties: dict[str, Any] | None = None,
        docker_args: str | None = None,
        shm_size: str | None = None,
        max_instance_count: int | None = None,
        locations: list[str] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(
            instance_count=instance_count,
            instance_type=instance_type,
            properties=properties,
            docker_args=docker_args,
            shm_size=shm_size,
            max_instance_count=max_instance_count,
            locations=locations,
            **kwargs,
        )


ResourceConfiguration = JobResourceConfiguration  # the name azure.ai.ml.entities also has


class Environment(_Settings):
    """An environment: recorded in the step's logs, not provisioned (steps run with the
    current Python). ``conda_file`` is a path, relative to where the pipeline is built."""

    _KEYS = (
        "name",
        "version",
        "description",
        "tags",
        "properties",
        "image",
        "conda_file",
        "build",
        "os_type",
        "inference_config",
        "datastore",
    )
    image: str | None
    conda_file: str | None

    def __init__(
        self,
        *,
        name: str | None = None,
        version: str | None = None,
        description: str | None = None,
        image: str | None = None,
        conda_file: str | None = None,
        tags: dict[str, str] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(
            name=name,
            version=version,
            description=description,
            image=image,
            conda_file=None if conda_file is None else str(conda_file),
            tags=tags,
            **kwargs,
        )


class PipelineJobSettings(_Settings):
    """``pipeline_job.settings``: ``default_compute``, ``default_datastore``,
    ``continue_on_step_failure``, ``force_rerun``, ``default_environment``."""

    _KEYS = (
        "default_compute",
        "default_datastore",
        "continue_on_step_failure",
        "force_rerun",
        "default_environment",
    )
    default_compute: str | None
    default_datastore: str | None
    continue_on_step_failure: bool | None
    force_rerun: bool | None
    default_environment: str | None

    def __init__(
        self,
        *,
        default_compute: str | None = None,
        default_datastore: str | None = None,
        continue_on_step_failure: bool | None = None,
        force_rerun: bool | None = None,
        default_environment: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(
            default_compute=default_compute,
            default_datastore=default_datastore,
            continue_on_step_failure=continue_on_step_failure,
            force_rerun=force_rerun,
            default_environment=default_environment,
            **kwargs,
        )
