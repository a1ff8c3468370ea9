"""``Input`` and ``Output`` as in ``azure.ai.ml``, and the ports of nodes that bind them.

Data flow::

    Input(type, path, mode, default, ...)  --declared by-->  parallel_run_function / command
                                                                   |  node = comp(x=value)
    value: Input | literal | other.outputs.o | pipeline input      v
                               NodeInput(meta=declaration, data=value)   NodeOutput(meta, path)
                                                                   |  node._to_dict()
                                                                   v
                    YAML value: {type, path, mode} | 5 | ${{parent.jobs.n.outputs.o}} | ...

Invariants: an ``Input`` of a literal type (integer, number, string, boolean) has no ``mode``
and no ``path``; a data input has no ``default``. The constructors check what the SDK's
check at construction, with the SDK's messages (:class:`~parajob.errors.ValidationError`);
everything else (modes, paths that exist) is checked by ``parajob.spec`` when the pipeline is
loaded or run, with file, line and field.
"""

from __future__ import annotations

import copy
import math
import os
from collections.abc import Iterator
from typing import Any

from parajob.errors import ValidationError

__all__ = [
    "Input",
    "Output",
    "NodeInput",
    "NodeOutput",
    "PipelineInput",
    "IODict",
    "DATA_TYPES",
    "LITERAL_TYPES",
    "UnexpectedAttributeError",
    "is_local_path",
]

DATA_TYPES = ("uri_folder", "uri_file", "mltable", "mlflow_model", "custom_model", "triton_model")
LITERAL_TYPES: dict[str, type] = {"integer": int, "number": float, "string": str, "boolean": bool}
_PY_TO_LITERAL = {bool: "boolean", int: "integer", float: "number", str: "string"}
# azure.ai.ml IOConstants.INPUT_TYPE_COMBINATION: the parameters each type may set.
_COMBINATION = {
    **{t: ("path", "mode") for t in DATA_TYPES},
    "integer": ("default", "min", "max"),
    "number": ("default", "min", "max"),
    "string": ("default",),
    "boolean": ("default",),
}


class UnexpectedAttributeError(ValidationError, AttributeError):
    """``node.inputs.<name>`` for a name the node does not have (the SDK's message)."""

    def __init__(self, keyword: str, keywords: list[str]) -> None:
        message = f"Got an unexpected attribute {keyword!r}"
        message += (
            ", valid attributes: " + ", ".join(repr(k) for k in keywords) + "." if keywords else "."
        )
        super().__init__(message, keyword)


def is_local_path(value: object) -> bool:
    """A path on this machine, relative or absolute (not a binding, URI or asset id)."""
    return (
        isinstance(value, str)
        and bool(value)
        and "${{" not in value
        and "://" not in value
        and not value.startswith("azureml:")
    )


class Input:
    """An input: data (``uri_folder``, ``uri_file``, ``mltable``, models) or a literal.

    Same keywords and defaults as ``azure.ai.ml.Input``. Used both to declare a component's
    input (``inputs=dict(data=Input(type="mltable"))``) and to give a value
    (``node(data=Input(path="./iris"))``). Keywords the SDK accepts beyond these are kept and
    written to the YAML as they are.
    """

    _IO_KEYS = (
        "type",
        "path",
        "mode",
        "description",
        "default",
        "min",
        "max",
        "enum",
        "optional",
        "datastore",
    )

    def __init__(
        self,
        *,
        type: str = "uri_folder",
        path: str | os.PathLike[str] | None = None,
        mode: str | None = None,
        default: str | int | float | bool | None = None,
        optional: bool | None = None,
        min: int | float | None = None,
        max: int | float | None = None,
        enum: list[str] | None = None,
        description: str | None = None,
        datastore: str | None = None,
        **kwargs: Any,
    ) -> None:
        if not isinstance(type, str) or type not in _COMBINATION:
            raise ValidationError(
                f"Input type {type!r} is not supported: expected one of "
                + ", ".join(repr(t) for t in _COMBINATION)
                + ".",
                "type",
            )
        self.type = type
        self.path = (
            None
            if path is None
            else (os.fspath(path) if isinstance(path, os.PathLike) else str(path))
        )
        self.mode = None if self.is_literal else mode
        self.description = description
        self.optional = optional
        self.min, self.max, self.enum = min, max, enum
        self.datastore = datastore
        self.extra: dict[str, Any] = dict(kwargs)
        self.default = self._checked_default(default)
        self._check_combination()

    @property
    def is_literal(self) -> bool:
        return self.type in LITERAL_TYPES

    def _checked_default(self, value: Any) -> Any:
        prefix = "Default value of Input "
        if value is None:
            return None
        if not self.is_literal:
            raise ValidationError(
                f"{prefix}cannot be set: Non-primitive type Input has no default value.", "default"
            )
        if isinstance(value, float) and not math.isfinite(value):
            return None  # the SDK ignores nan/inf defaults (the service cannot store them)
        if builtin_type(value) is None:
            raise ValidationError(
                f"{prefix}cannot be set: type must be one of "
                f"{list(_PY_TO_LITERAL.values())}, got '{builtin_type_name(value)}'.",
                "default",
            )
        if isinstance(value, LITERAL_TYPES[self.type]):
            return value  # as the SDK: True passes for an integer (bool is an int)
        try:
            return parse_literal(self.type, value)
        except (TypeError, ValueError) as exc:
            raise ValidationError(
                f"{prefix}cannot be parsed, got '{value}', type = {type(value)!r}.", "default"
            ) from exc

    def _check_combination(self) -> None:
        allowed = _COMBINATION[self.type]
        for key in ("path", "mode", "default", "min", "max"):
            value = getattr(self, key)
            if key not in allowed and value is not None:
                raise ValidationError(
                    f"Invalid parameter for '{self.type}' Input, parameter "
                    f"'{key}' should be None but got '{value}'",
                    key,
                )

    def _to_dict(self) -> dict[str, Any]:
        out = {k: getattr(self, k) for k in self._IO_KEYS if getattr(self, k) is not None}
        out.update(self.extra)
        return out

    def __repr__(self) -> str:
        return f"Input({', '.join(f'{k}={v!r}' for k, v in self._to_dict().items())})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Input) and self._to_dict() == other._to_dict()

    __hash__ = None  # type: ignore[assignment]  # mutable, as the SDK's


def builtin_type(value: object) -> str | None:
    return _PY_TO_LITERAL.get(type(value))


def builtin_type_name(value: object) -> str:
    return f"<class '{type(value).__name__}'>"


def parse_literal(kind: str, value: Any) -> Any:
    """The SDK's ``Input._parse``: "10.0" -> 10 for integer, "true"/"false" for boolean."""
    if kind == "integer":
        return int(float(value))
    if kind == "number":
        return float(value)
    if kind == "boolean":
        text = str(value).lower()
        if text not in ("true", "false"):
            raise ValueError(f"Boolean parameter only accept True/False, got {value}.")
        return text == "true"
    return str(value)


class Output:
    """An output, as ``azure.ai.ml.Output``: ``type`` (default ``uri_folder``), ``path``,
    ``mode``, ``description``; other keywords are kept and written to the YAML."""

    _IO_KEYS = ("type", "path", "mode", "description")

    def __init__(
        self,
        *,
        type: str = "uri_folder",
        path: str | os.PathLike[str] | None = None,
        mode: str | None = None,
        description: str | None = None,
        **kwargs: Any,
    ) -> None:
        self.type = type
        self.path = None if path is None else os.fspath(path)
        self.mode = mode
        self.description = description
        self.extra: dict[str, Any] = dict(kwargs)

    def _to_dict(self) -> dict[str, Any]:
        out = {k: getattr(self, k) for k in self._IO_KEYS if getattr(self, k) is not None}
        out.update(self.extra)
        return out

    def __repr__(self) -> str:
        return f"Output({', '.join(f'{k}={v!r}' for k, v in self._to_dict().items())})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Output) and self._to_dict() == other._to_dict()

    __hash__ = None  # type: ignore[assignment]


class PipelineInput:
    """A parameter of a ``dsl.pipeline`` function while it runs: binding a node input to it
    writes ``${{parent.inputs.<name>}}``. ``data`` is the value the pipeline was called with."""

    def __init__(self, name: str, data: Any) -> None:
        self.name = name
        self.data = data

    @property
    def is_literal(self) -> bool:
        return not isinstance(self.data, Input) or self.data.is_literal

    def __str__(self) -> str:
        return f"${{{{parent.inputs.{self.name}}}}}"

    def __repr__(self) -> str:
        return f"PipelineInput({self.name!r}, {self.data!r})"


class NodeInput:
    """One input of a node: ``meta`` is its declaration (None when the node was read from
    YAML or gives values without declarations), ``data`` what it is bound to.

    ``type``, ``mode``, ``description`` and ``path`` may be set, as on the SDK's
    ``NodeInput`` (``node.inputs.data.mode = "direct"``): on the bound ``Input`` (a copy:
    the value may be shared with other nodes), on a new ``Input`` of the declared type when
    nothing is bound (the SDK's ``_build_default_data``), else (a binding to a pipeline input
    or another node's output) kept in ``overrides`` and written beside the binding.
    """

    def __init__(self, name: str, meta: Input | None, data: Any = None) -> None:
        self.name, self.meta, self.data = name, meta, data
        self.overrides: dict[str, Any] = {}

    @property
    def type(self) -> str | None:
        if "type" in self.overrides:
            return str(self.overrides["type"])
        if isinstance(self.data, Input):
            return self.data.type
        return self.meta.type if self.meta is not None else None

    @type.setter
    def type(self, value: str) -> None:
        self._set("type", value)

    @property
    def mode(self) -> str | None:
        return self._get("mode")

    @mode.setter
    def mode(self, value: str | None) -> None:
        self._set("mode", value)

    @property
    def description(self) -> str | None:
        return self._get("description")

    @description.setter
    def description(self, value: str | None) -> None:
        self._set("description", value)

    @property
    def path(self) -> str | None:
        if isinstance(self.data, Input):
            return self.data.path
        if isinstance(self.data, dict):
            return self.data.get("path")
        return self.data if self._is_path_str() else None

    @path.setter
    def path(self, value: str | os.PathLike[str] | None) -> None:
        if isinstance(self.data, (NodeOutput, PipelineInput)):
            raise ValidationError(f"{type(self.data)} does not support setting path.", "path")
        self._set("path", None if value is None else os.fspath(value))

    def _is_path_str(self) -> bool:
        """A str given for a declared data input: its path (as the SDK reads it)."""
        return isinstance(self.data, str) and is_local_path(self.data) and self.type in DATA_TYPES

    def _get(self, key: str) -> str | None:
        value: Any = None
        if key in self.overrides:
            value = self.overrides[key]
        elif isinstance(self.data, (Input, Output)):
            value = getattr(self.data, key)
        elif isinstance(self.data, dict):
            value = self.data.get(key)
        elif self.data is None and self.meta is not None:
            value = getattr(self.meta, key)
        return None if value is None else str(value)

    def _set(self, key: str, value: Any) -> None:
        data = self.data
        if data is None:  # unbound: an Input of the declared type carries the setting;
            # undeclared (a component file's port): a mapping, so no type is invented
            data = Input(type=self.meta.type) if self.meta is not None else {}
        elif self._is_path_str():
            data = Input(type=self.type or "uri_folder", path=data)  # a path given as str
        if isinstance(data, Input):
            data = copy.copy(data)
            data.extra = dict(data.extra)
            setattr(data, key, value)
            self.data = data
        elif isinstance(data, dict):
            self.data = {**data, key: value}
        else:
            self.overrides[key] = value

    def __repr__(self) -> str:
        return f"NodeInput({self.name!r}, data={self.data!r})"


class NodeOutput:
    """One output of a node. ``type``, ``mode``, ``path`` and ``description`` start from the
    declaration and may be set (``node.outputs.scores.path = "..."``); ``binding`` is the
    pipeline output it was returned as, or YAML text read from a file.

    ``port_name`` is the port (``${{parent.jobs.<node>.outputs.<port_name>}}``); ``name``
    and ``version`` are, as in the SDK, the asset the output is registered as
    (``node.outputs.model.name = "my_model"``), written to the YAML beside ``type``.
    """

    def __init__(self, name: str, owner: object, meta: Output | None = None) -> None:
        self.port_name, self.owner = name, owner
        meta = meta or Output(type=None)  # type: ignore[arg-type]  # type unknown: left out
        self.type: str | None = meta.type
        self.path: str | None = meta.path
        self.mode: str | None = meta.mode
        self.description: str | None = meta.description
        self.extra: dict[str, Any] = dict(meta.extra)
        self.binding: str | None = None

    @property
    def name(self) -> str | None:
        return self.extra.get("name")

    @name.setter
    def name(self, value: str | None) -> None:
        self._set_extra("name", value)

    @property
    def version(self) -> str | None:
        return self.extra.get("version")

    @version.setter
    def version(self, value: str | None) -> None:
        self._set_extra("version", value)

    def _set_extra(self, key: str, value: Any) -> None:
        if value is None:
            self.extra.pop(key, None)
        else:
            self.extra[key] = value

    def _to_dict(self) -> dict[str, Any]:
        out = {
            k: getattr(self, k)
            for k in ("type", "path", "mode", "description")
            if getattr(self, k) is not None
        }
        out.update(self.extra)
        return out

    def __repr__(self) -> str:
        return f"NodeOutput({self.port_name!r}, {self._to_dict()!r})"


class IODict:
    """``node.inputs`` / ``node.outputs``: attribute and item access to the ports by name;
    an unknown name is an error naming the valid ones (as the SDK's ``_AttrDict``)."""

    def __init__(self, items: dict[str, Any], setter: Any = None) -> None:
        object.__setattr__(self, "_items", items)
        object.__setattr__(self, "_setter", setter)

    def __getattr__(self, name: str) -> Any:
        items: dict[str, Any] = object.__getattribute__(self, "_items")
        if name.startswith("__") or name not in items:
            if name.startswith("__"):
                raise AttributeError(name)
            raise UnexpectedAttributeError(name, list(items))
        return items[name]

    def __setattr__(self, name: str, value: Any) -> None:
        self[name] = value

    def __getitem__(self, name: str) -> Any:
        return self.__getattr__(name)

    def __setitem__(self, name: str, value: Any) -> None:
        items: dict[str, Any] = object.__getattribute__(self, "_items")
        if name not in items:
            raise UnexpectedAttributeError(name, list(items))
        setter = object.__getattribute__(self, "_setter")
        setter(name, value)

    def __iter__(self) -> Iterator[str]:
        return iter(object.__getattribute__(self, "_items"))

    def __len__(self) -> int:
        return len(object.__getattribute__(self, "_items"))

    def __contains__(self, name: object) -> bool:
        return name in object.__getattribute__(self, "_items")

    def keys(self) -> list[str]:
        return list(object.__getattribute__(self, "_items"))

    def items(self) -> list[tuple[str, Any]]:
        return list(object.__getattribute__(self, "_items").items())

    def values(self) -> list[Any]:
        return list(object.__getattribute__(self, "_items").values())

    def __repr__(self) -> str:
        return repr(object.__getattribute__(self, "_items"))
