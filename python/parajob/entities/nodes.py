"""Pipeline nodes: ``Parallel`` (a parallel step) and ``Command`` (a command step).

Data flow::

    parallel_run_function(...) / command(...)  -> a node that is also a component:
        node = comp(data=..., n=5)             -> a copy with its inputs bound (comp unchanged)
        node.mini_batch_size = "20"; node.outputs.out.path = "./out.txt"   (as in the SDK)
    Pipeline._to_dict() -> node._to_dict(names) -> the step's YAML mapping

``names`` maps ``id(node)`` to the node's name in the pipeline, for
``${{parent.jobs.<name>.outputs.<out>}}``. A node made while a ``dsl.pipeline`` function runs
is recorded by that pipeline (:func:`building`); other nodes belong to no pipeline until one
is built from them. Keys a node read from YAML does not model are kept in ``extra`` and
written back unchanged, so ``load -> dump`` loses nothing.
"""

from __future__ import annotations

import copy
import re
import threading
from typing import Any

from parajob.entities.io import (
    Input,
    IODict,
    NodeInput,
    NodeOutput,
    Output,
    PipelineInput,
    builtin_type,
)
from parajob.entities.render import render_input, render_output
from parajob.entities.settings import (
    Environment,
    JobResourceConfiguration,
    RetrySettings,
    check_type,
    from_value,
)
from parajob.errors import ValidationError

__all__ = ["Node", "Parallel", "Command", "RunFunction", "building"]

_STATE = threading.local()


def building() -> list[Node] | None:
    """The node list of the ``dsl.pipeline`` function running in this thread, if any."""
    stack: list[list[Node]] = getattr(_STATE, "stack", [])
    return stack[-1] if stack else None


def push_builder() -> list[Node]:
    nodes: list[Node] = []
    stack: list[list[Node]] = getattr(_STATE, "stack", [])
    _STATE.stack = [*stack, nodes]
    return nodes


def pop_builder() -> None:
    _STATE.stack = _STATE.stack[:-1]


def _dict_of(value: Any) -> Any:
    return value._to_dict() if hasattr(value, "_to_dict") else value


class RunFunction:
    """The task of a parallel step (``azure.ai.ml.parallel.RunFunction``): ``code`` is the
    folder put on ``sys.path``, ``entry_script`` the script in it with ``init``/``run``."""

    def __init__(
        self,
        *,
        code: str | None = None,
        entry_script: str | None = None,
        program_arguments: str | None = None,
        model: str | None = None,
        append_row_to: str | None = None,
        environment: Environment | str | None = None,
        **kwargs: Any,
    ) -> None:
        check_type("environment", environment, (Environment, str, dict))
        self.type = kwargs.pop("type", "run_function")
        self.code = None if code is None else str(code)
        self.entry_script = entry_script
        self.program_arguments = program_arguments
        self.model = model
        self.append_row_to = append_row_to
        self.environment = (
            Environment(**environment) if isinstance(environment, dict) else environment
        )
        self.extra: dict[str, Any] = kwargs

    def _to_dict(self) -> dict[str, Any]:
        keys = (
            "type",
            "code",
            "entry_script",
            "environment",
            "program_arguments",
            "model",
            "append_row_to",
        )
        out = {k: _dict_of(getattr(self, k)) for k in keys if getattr(self, k) is not None}
        out.update(self.extra)
        return out

    def __repr__(self) -> str:
        return f"RunFunction({self._to_dict()!r})"


# Node fields and the YAML order they are written in (the order the service's docs use).
_COMMON_HEAD = (
    "display_name",
    "description",
    "tags",
    "properties",
    "compute",
    "experiment_name",
    "component",
)
_PARALLEL_FIELDS = (
    "input_data",
    "mini_batch_size",
    "partition_keys",
    "resources",
    "max_concurrency_per_instance",
    "mini_batch_error_threshold",
    "error_threshold",
    "retry_settings",
    "logging_level",
    "environment_variables",
    "identity",
)
_COMMAND_FIELDS = (
    "command",
    "code",
    "environment",
    "environment_variables",
    "resources",
    "distribution",
    "limits",
    "identity",
)
_NODE_NAME = re.compile(r"^[a-z_][a-z0-9_]*$")


class Node:
    """What parallel and command nodes share: name, descriptive fields, ports, calling."""

    type = "node"

    def __init__(
        self,
        *,
        name: str | None = None,
        display_name: str | None = None,
        description: str | None = None,
        tags: dict[str, str] | None = None,
        properties: dict[str, Any] | None = None,
        compute: str | None = None,
        experiment_name: str | None = None,
        inputs: dict[str, Any] | None = None,
        outputs: dict[str, Any] | None = None,
        is_deterministic: bool = True,
        component: str | None = None,
    ) -> None:
        check_type("tags", tags, dict)
        check_type("inputs", inputs, dict)
        check_type("outputs", outputs, dict)
        self.name = name
        self.component_name = name  # parallel_run_function(name=...): names anonymous nodes
        self.display_name, self.description = display_name, description
        self.tags: dict[str, str] = dict(tags or {})
        self.properties = properties
        self.compute, self.experiment_name = compute, experiment_name
        self.is_deterministic = is_deterministic
        self.component = component  # a component file a YAML step names (kept as written)
        self.extra: dict[str, Any] = {}
        self._inputs: dict[str, NodeInput] = {}
        self._outputs: dict[str, NodeOutput] = {}
        for key, value in (inputs or {}).items():
            self._inputs[key] = _declared_input(key, value)
        for key, value in (outputs or {}).items():
            check_type(f"outputs.{key}", value, (Output, dict, str))
            meta = Output(**value) if isinstance(value, dict) else value
            out = NodeOutput(key, self, meta if isinstance(meta, Output) else None)
            if isinstance(meta, str):
                out.binding = meta
            self._outputs[key] = out
        nodes = building()
        if nodes is not None:
            nodes.append(self)

    @property
    def inputs(self) -> IODict:
        return IODict(self._inputs, self._bind)

    @property
    def outputs(self) -> IODict:
        return IODict(self._outputs, self._set_output)

    def _bind(self, name: str, value: Any) -> None:
        # a new binding starts afresh, as the SDK's (settings made on the old one go with it)
        self._inputs[name] = NodeInput(name, self._inputs[name].meta, value)

    def _set_output(self, name: str, value: Any) -> None:
        check_type(f"outputs.{name}", value, (Output, str))
        out = NodeOutput(name, self, value if isinstance(value, Output) else None)
        out.binding = value if isinstance(value, str) else None
        self._outputs[name] = out

    def __call__(self, *args: Any, **kwargs: Any) -> Node:
        """A copy of this node with inputs bound: ``comp(data=Input(path=...), n=5)``."""
        shown = self.component_name or type(self).__name__.lower()
        if args:
            raise ValidationError(
                f"{shown}() takes 0 positional argument but {len(args)} were given."
            )
        for key in kwargs:
            if key not in self._inputs:
                message = f"{shown}() got an unexpected keyword argument {key!r}"
                message += (
                    ", valid keywords: " + ", ".join(repr(k) for k in self._inputs) + "."
                    if self._inputs
                    else "."
                )
                raise ValidationError(message, key)
        nodes = building()
        node = copy.copy(self)
        node.__dict__ = copy.deepcopy(
            {k: v for k, v in self.__dict__.items() if k not in ("_inputs", "_outputs")}
        )
        node._inputs = {}
        for key, port in self._inputs.items():
            node._inputs[key] = NodeInput(key, port.meta, port.data)
            node._inputs[key].overrides = dict(port.overrides)
        node._outputs = {}
        for key, out in self._outputs.items():
            twin = copy.copy(out)
            twin.owner, twin.extra = node, dict(out.extra)
            node._outputs[key] = twin
        for key, value in kwargs.items():
            node._bind(key, value)
        if nodes is not None:
            nodes.append(node)
        return node

    # -- YAML -------------------------------------------------------------------------------
    def __str__(self) -> str:
        """The node as the YAML of a pipeline step (``print(component)`` as in the SDK);
        an input bound to another node's output names that node as it is named now."""
        from parajob.entities.pipeline import _dump  # pipeline imports this module

        names = {id(self): self.name or ""}
        for port in self._inputs.values():
            if isinstance(port.data, NodeOutput):
                owner = port.data.owner
                names[id(owner)] = str(getattr(owner, "name", None) or "<unnamed node>")
        return _dump(self._to_dict(names))

    def __repr__(self) -> str:
        where = f", component={self.component!r}" if self.component else ""
        return f"{type(self).__name__}(name={self.name!r}{where})"

    def _fields(self) -> tuple[str, ...]:
        return ()

    def _to_dict(self, names: dict[int, str]) -> dict[str, Any]:
        # type None: a YAML step that took its type from its component file
        out: dict[str, Any] = {"type": self.type} if self.type else {}
        for key in _COMMON_HEAD:
            value = getattr(self, key)
            if value not in (None, {}):
                out[key] = value
        inputs = {
            k: render_input(v, names) for k, v in self._inputs.items() if not _unset_undeclared(v)
        }
        if inputs:
            out["inputs"] = inputs
        outputs = {k: render_output(v) for k, v in self._outputs.items()}
        if self.component is not None:  # what the node leaves unset, the component gives
            outputs = {k: v for k, v in outputs.items() if v != {}}
        if outputs:
            out["outputs"] = outputs
        for key in self._fields():
            value = _dict_of(getattr(self, key))
            if value not in (None, {}):
                out[key] = value
        if not self.is_deterministic:
            out["is_deterministic"] = False
        out.update(self.extra)
        return out


def check_node_name(name: str) -> None:
    if not _NODE_NAME.match(name):
        raise ValidationError(
            f"Invalid node name found: {name!r}. Node name must start with a lower letter or "
            "underscore, and can only contain lower letters, numbers and underscore.",
            "name",
        )


def _declared_input(key: str, value: Any) -> NodeInput:
    """``inputs=dict(x=...)`` of a builder: an Input declares (and, with a path, gives) the
    input; a literal declares its type and is its value (the SDK's ``_parse_input``)."""
    if isinstance(value, dict):
        value = Input(**value)
    if isinstance(value, Input):
        data = value if value.path is not None else None
        return NodeInput(key, value, data)
    if value is None or isinstance(value, (NodeOutput, PipelineInput)):
        return NodeInput(key, None, value)
    kind = builtin_type(value)
    if kind is None:
        raise ValidationError(
            f"Unsupported input type: {type(value)}, only Input, dict, "
            "str, bool, int and float are supported.",
            f"inputs.{key}",
        )
    return NodeInput(key, Input(type=kind), value)


def _unset_undeclared(value: NodeInput) -> bool:
    return value.meta is None and value.data is None


class Parallel(Node):
    """A parallel step, as ``azure.ai.ml.parallel``'s ``Parallel`` node: made by
    :func:`parajob.parallel.parallel_run_function`, called to bind its inputs."""

    type = "parallel"

    def __init__(
        self,
        *,
        retry_settings: RetrySettings | dict[str, Any] | None = None,
        logging_level: str | None = None,
        max_concurrency_per_instance: int | str | None = None,
        error_threshold: int | str | None = None,
        mini_batch_error_threshold: int | str | None = None,
        input_data: str | None = None,
        task: RunFunction | dict[str, Any] | None = None,
        partition_keys: list[str] | None = None,
        mini_batch_size: int | str | None = None,
        resources: JobResourceConfiguration | dict[str, Any] | None = None,
        environment_variables: dict[str, str] | None = None,
        identity: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        for attr, value, expected in (
            ("task", task, (dict, RunFunction)),
            ("logging_level", logging_level, str),
            ("max_concurrency_per_instance", max_concurrency_per_instance, (str, int)),
            ("error_threshold", error_threshold, (str, int)),
            ("mini_batch_error_threshold", mini_batch_error_threshold, (str, int)),
            ("environment_variables", environment_variables, dict),
            ("partition_keys", partition_keys, list),
        ):
            check_type(attr, value, expected)
        super().__init__(**kwargs)
        self.retry_settings = retry_settings  # the setters convert and check
        self.resources = resources
        self.logging_level = logging_level
        self.max_concurrency_per_instance = max_concurrency_per_instance
        self.error_threshold = error_threshold
        self.mini_batch_error_threshold = mini_batch_error_threshold
        self.input_data = input_data
        self.task = RunFunction(**task) if isinstance(task, dict) else task
        self.partition_keys = partition_keys
        self.mini_batch_size = mini_batch_size
        self.environment_variables: dict[str, str] = dict(environment_variables or {})
        self.identity = identity

    @property
    def retry_settings(self) -> RetrySettings | None:
        return self._retry_settings

    @retry_settings.setter
    def retry_settings(self, value: RetrySettings | dict[str, Any] | None) -> None:
        self._retry_settings = from_value("retry_settings", value, RetrySettings)

    @property
    def resources(self) -> JobResourceConfiguration:
        return self._resources

    @resources.setter
    def resources(self, value: JobResourceConfiguration | dict[str, Any] | None) -> None:
        # Never None here (the SDK's may be): ``node.resources.instance_count = 2`` works on
        # every node; an empty one is not written.
        self._resources = (
            from_value("resources", value, JobResourceConfiguration) or JobResourceConfiguration()
        )

    @property
    def mini_batch_size(self) -> str | None:
        return self._mini_batch_size

    @mini_batch_size.setter
    def mini_batch_size(self, value: int | str | None) -> None:
        self._mini_batch_size = check_mini_batch_size(value)

    def set_resources(
        self,
        *,
        instance_type: str | None = None,
        instance_count: int | None = None,
        properties: dict[str, Any] | None = None,
        docker_args: str | None = None,
        shm_size: str | None = None,
        **kwargs: Any,
    ) -> None:
        """Set fields of ``resources`` (the SDK's ``Parallel.set_resources``)."""
        for key, value in (
            ("instance_type", instance_type),
            ("instance_count", instance_count),
            ("properties", properties),
            ("docker_args", docker_args),
            ("shm_size", shm_size),
        ):
            if value is not None:
                setattr(self._resources, key, value)

    def _fields(self) -> tuple[str, ...]:
        return _PARALLEL_FIELDS

    def _to_dict(self, names: dict[int, str]) -> dict[str, Any]:
        out = super()._to_dict(names)
        if self.task is not None:
            out["task"] = self.task._to_dict()
        if out.get("partition_keys") == []:
            out.pop("partition_keys")
        return out


def check_mini_batch_size(value: int | str | None) -> str | None:
    """The SDK's check of ``mini_batch_size``; kept as written ("10kb"), not turned into
    bytes as the SDK does, so that the YAML reads like a hand-written one (same meaning)."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise ValidationError(
            f"Expecting (<class 'str'>, <class 'int'>) for mini_batch_size, "
            f"got {type(value)} instead.",
            "mini_batch_size",
        )
    if isinstance(value, int):
        return str(value)
    if "${{" in value:
        return value  # a data binding (${{parent.inputs.size}}), resolved on load
    if not re.fullmatch(r"\d+([kKmMgG][bB])?", value):
        raise ValidationError(
            r"Parameter mini_batch_size must follow regex rule "
            r"^\d+([kKmMgG][bB])*$",
            "mini_batch_size",
        )
    return value


class Command(Node):
    """A command step, as the node ``azure.ai.ml.command(...)`` makes: ``command`` run by a
    shell in a copy of ``code``."""

    type = "command"

    def __init__(
        self,
        *,
        command: str | None = None,
        code: str | None = None,
        environment: Environment | str | None = None,
        environment_variables: dict[str, str] | None = None,
        resources: JobResourceConfiguration | dict[str, Any] | None = None,
        distribution: dict[str, Any] | None = None,
        limits: dict[str, Any] | None = None,
        identity: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        check_type("command", command, str)
        check_type("environment", environment, (Environment, str, dict))
        check_type("environment_variables", environment_variables, dict)
        super().__init__(**kwargs)
        self.command = command
        self.code = None if code is None else str(code)
        self.environment = (
            Environment(**environment) if isinstance(environment, dict) else environment
        )
        self.environment_variables: dict[str, str] = dict(environment_variables or {})
        self.resources = (
            from_value("resources", resources, JobResourceConfiguration)
            or JobResourceConfiguration()
        )
        self.distribution, self.limits, self.identity = distribution, limits, identity

    def _fields(self) -> tuple[str, ...]:
        return _COMMAND_FIELDS
