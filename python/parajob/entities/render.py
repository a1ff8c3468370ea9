"""A node's ports as YAML values: what each kind of binding is written as.

Data flow::

    NodeInput(meta=declaration, data=binding)
        data None             -> the declaration    {type: integer, default: 3}
        data Input            -> declaration + data {type: mltable, mode: direct, path: ./d}
        data literal          -> {type: integer, value: 5} (bare 5 without a declaration)
        data other.outputs.o  -> {type: uri_folder, path: ${{parent.jobs.<owner>.outputs.o}}}
        data pipeline input   -> ${{parent.inputs.x}} (literal) or {type, path: ${{...}}}
    NodeOutput -> {type, mode, path} or its binding (${{parent.outputs.x}})

``names`` maps ``id(node)`` to the node's name in the pipeline being written; binding to an
output of a node outside it is an error that says so.
"""

from __future__ import annotations

from typing import Any

from parajob.entities.io import (
    DATA_TYPES,
    LITERAL_TYPES,
    Input,
    NodeInput,
    NodeOutput,
    Output,
    PipelineInput,
)
from parajob.errors import ValidationError

__all__ = ["render_value", "render_input", "render_output"]


def render_value(data: Any, names: dict[int, str]) -> Any:
    """A bound value as YAML: a binding expression, an Input's mapping, or the literal."""
    if isinstance(data, NodeOutput):
        owner = names.get(id(data.owner))
        if owner is None:
            raise ValidationError(
                f"input bound to output '{data.port_name}' of a node that is not in this "
                "pipeline: create the node inside the dsl.pipeline function",
                data.port_name,
            )
        return f"${{{{parent.jobs.{owner}.outputs.{data.port_name}}}}}"
    if isinstance(data, PipelineInput):
        return str(data)
    if isinstance(data, Input):
        return data._to_dict()
    return data


def render_input(value: NodeInput, names: dict[int, str]) -> Any:
    rendered = _render_input(value, names)
    if not value.overrides:
        return rendered
    if isinstance(rendered, dict):
        return {**rendered, **value.overrides}
    # a bare binding with ``node.inputs.x.mode = ...`` set: the mapping form carries both
    data = value.data
    if isinstance(data, NodeOutput) or (isinstance(data, PipelineInput) and not data.is_literal):
        return {"path": rendered, **value.overrides}
    return rendered  # a literal's binding has no mode or description to write


def _render_input(value: NodeInput, names: dict[int, str]) -> Any:
    meta, data = value.meta, value.data
    if isinstance(data, Output):  # e.g. a pipeline's outputs.<x>: a declaration, no data
        raise ValidationError(
            f"input {value.name!r} is bound to an Output declaration "
            f"({data!r}); bind it to a node's output "
            "(node.outputs.<name>) or give an Input",
            value.name,
        )
    rendered = render_value(data, names)
    if meta is None:
        return rendered
    declared = meta._to_dict()
    if data is None:
        return declared
    if isinstance(data, Input):
        return {**declared, **rendered}
    if meta.type in LITERAL_TYPES:
        if isinstance(data, (PipelineInput, NodeOutput)):
            return rendered  # a literal binding is written bare
        return {**{k: v for k, v in declared.items() if k != "default"}, "value": data}
    if isinstance(data, PipelineInput) and data.is_literal:
        return rendered
    if isinstance(data, str) and "${{" not in data and meta.type in DATA_TYPES:
        return {**declared, "path": data}  # a str for a data input is its path, as the SDK
    return {**{k: v for k, v in declared.items() if k != "default"}, "path": rendered}


def render_output(value: NodeOutput) -> Any:
    if value.binding is not None:
        return value.binding
    return value._to_dict()
