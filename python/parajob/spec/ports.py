"""Inputs, of the pipeline and of its steps (outputs: :mod:`parajob.spec.outputs`).

An input is written one of these ways::

    x: 5                                   # a literal (string, integer, number, boolean)
    x: ${{parent.inputs.y}}                # a step input bound to a pipeline input
    x: ${{parent.jobs.prep.outputs.o}}     # another step's output (a DAG edge)
    x: {type: uri_folder, path: ./data, mode: download}   # data; path may be a binding too

Local paths are relative to the folder of the YAML file they are written in (a component's
paths to the component's folder); ``azureml://datastores/<ds>/paths/<p>`` goes through
:class:`~parajob.spec.places.Places`. Paths are made absolute and checked here, once, where
they are written (a step input bound to a pipeline input is not checked again; one bound to
another step's output is produced later). ``download`` inputs get the path of their copy
under ``<run>/<step>/inputs/<name>`` (``origin`` keeps the data's own path).

When the step names a component, its declared ports (:class:`Port`, :class:`OutPort`) give
the types and modes the node leaves out, the defaults of literals, and the set of names the
node may use; an optional port nobody gives becomes an Input with ``provided`` False.

Outputs are ``{type, mode, path}`` mappings, empty (all defaults), or
``${{parent.outputs.y}}``; their paths may use ``${{name}}``, ``${{default_datastore}}`` and
``${{output_name}}``.
"""

from __future__ import annotations

from dataclasses import replace

import yaml

from parajob.spec import schema
from parajob.spec.bindings import Ref, whole_ref
from parajob.spec.model import Input, Output
from parajob.spec.outputs import read_outputs
from parajob.spec.report import did_you_mean
from parajob.spec.scope import (
    NAME_PATTERN,
    OutPort,
    Port,
    Scope,
    check_exists,
    check_name,
    choice,
    kinds_clash,
    literal_text,
    local_path,
    parent_ref,
    producer,
    stage,
)
from parajob.spec.yaml_nodes import (
    BOOL,
    FLOAT,
    INT,
    STR,
    Entry,
    describe,
    field_join,
    get_bool,
    get_str,
    get_str_map,
    is_null,
    named_entries,
    read_mapping,
)

# read_outputs, Scope, ... are re-exported: the step readers import ports from here.
__all__ = [
    "Scope",
    "Port",
    "OutPort",
    "read_inputs",
    "read_outputs",
    "read_step_ports",
    "local_path",
    "NAME_PATTERN",
    "literal_text",
]

_LITERAL_TAGS = {INT: "integer", FLOAT: "number", BOOL: "boolean", STR: "string"}
_ACCEPTS = {
    "string": (STR, INT, FLOAT, BOOL),
    "integer": (INT,),
    "number": (INT, FLOAT),
    "boolean": (BOOL,),
}


def read_step_ports(
    s: Scope, keys: dict[str, Entry], name: str, anchor: yaml.Node | None
) -> tuple[dict[str, str], dict[str, Input], dict[str, Output]]:
    """A step's ``tags``, ``inputs`` and ``outputs`` (any step type). Its outputs are
    registered in ``s.producers`` under the step's name for later ``parent.jobs`` bindings."""
    tags = get_str_map(s.r, keys["tags"].value, keys["tags"].field) if "tags" in keys else {}
    inputs = read_inputs(
        s,
        keys["inputs"].value if "inputs" in keys else None,
        field_join(s.prefix, "inputs"),
        anchor=anchor,
    )
    outputs = read_outputs(
        s, keys["outputs"].value if "outputs" in keys else None, field_join(s.prefix, "outputs")
    )
    s.producers[name] = outputs
    return tags or {}, inputs, outputs


# -- inputs -------------------------------------------------------------------------------
def read_inputs(
    s: Scope, node: yaml.Node | None, fld: str, anchor: yaml.Node | None = None
) -> dict[str, Input]:
    """Read an ``inputs:`` mapping (``node`` None: the step wrote none). An input with errors
    is kept as a placeholder (a ``uri_folder`` with no path) so that its uses do not cause
    follow-on errors; the loader raises anyway, so the placeholder never reaches a caller.
    With component ports, ports the node leaves out get their default, stay unprovided when
    optional, and are errors otherwise (reported at ``anchor``)."""
    out: dict[str, Input] = {}
    for entry in (named_entries(s.r, node, fld) if node is not None else []) or []:
        name = str(entry.key.value)
        if check_name(s, entry, "input"):
            s.note(entry.field, entry.value)
            out[name] = _read_input(s, entry) or Input(name, "uri_folder", None)
    for name, port in (s.in_ports or {}).items():
        if name in out:
            continue
        if port.default is not None and isinstance(port.default, yaml.ScalarNode):
            out[name] = Input(
                name, port.type, None, "direct", literal_text(port.default), optional=port.optional
            )
        elif port.optional:
            out[name] = Input(
                name, port.type, None, port.mode or "ro_mount", optional=True, provided=False
            )
        else:
            line = port.node.start_mark.line + 1
            s.r.error(
                anchor or node,
                fld,
                f"missing input '{name}' ({port.type}), required by "
                f"component {s.component} (line {line})",
                f"give it under inputs:, e.g. {name}: "
                + ("<value>" if port.is_literal else f"{{type: {port.type}, path: ./...}}"),
            )
            out[name] = Input(name, port.type, None)
    return out


def _read_input(s: Scope, entry: Entry) -> Input | None:
    name, node, fld = str(entry.key.value), entry.value, entry.field
    port = None
    if s.in_ports is not None:
        port = s.in_ports.get(name)
        if port is None:
            hint = did_you_mean(name, s.in_ports) or (
                f"its inputs: {', '.join(s.in_ports)}" if s.in_ports else "it declares none"
            )
            s.r.error(entry.key, fld, f"component {s.component} declares no input '{name}'", hint)
            return None
    if is_null(node):
        s.r.error(
            node,
            fld,
            f"input '{name}' has no value",
            "give a literal, ${{parent.inputs.<name>}}, or {type, path, mode}",
        )
        return None
    if isinstance(node, yaml.ScalarNode):
        text = str(node.value)
        ref = whole_ref(text) if node.tag == STR else None
        if ref is not None:
            return _bound_input(s, name, node, fld, ref, None, None, port)
        if "${{" in text:
            s.r.error(node, fld, f"a binding must be the whole value, found '{text}'")
            return None
        return _literal(s, name, node, fld, port.type if port else None, port)
    keys = read_mapping(s.r, node, fld, schema.INPUT_KEYS, anchor=entry.key)
    return None if keys is None else _read_input_object(s, name, node, fld, keys, port)


def _bound_input(
    s: Scope,
    name: str,
    node: yaml.Node,
    fld: str,
    ref: Ref,
    kind: str | None,
    mode: str | None,
    port: Port | None,
) -> Input | None:
    """An input whose value (or ``path:``) is ``${{parent.inputs.x}}`` or
    ``${{parent.jobs.s.outputs.o}}``; ``kind``/``mode`` as the input object says, if it does."""
    if ref.scope == "parent.jobs":
        out, ok = producer(s, node, fld, ref)
        if out is None:
            return (
                None
                if not ok
                else Input(
                    name,
                    kind or (port.type if port else "uri_folder"),
                    None,
                    mode or "ro_mount",
                    producer=(str(ref.step), ref.name),
                )
            )
        kind = kind or (port.type if port and not port.is_literal else None) or out.type
        if kind in schema.LITERAL_INPUT_TYPES or kinds_clash(kind, out.type):
            s.r.error(
                node,
                fld,
                f"input '{name}' is {_a(kind)} but {ref.text} is {_a(out.type)}",
                f"declare the input as type: {out.type}",
            )
            return None
        mode = mode or (port.mode if port else None) or "ro_mount"
        return stage(s, Input(name, kind, out.path, mode, producer=(str(ref.step), ref.name)))
    found = parent_ref(s, node, fld, ref, "parent.inputs", s.parent_inputs)
    if found is None or s.parent_inputs is None:
        return None
    parent = s.parent_inputs[found]
    if kind is not None and parent.is_literal != (kind in schema.LITERAL_INPUT_TYPES):
        s.r.error(
            node,
            fld,
            f"pipeline input '{parent.name}' is {_a(parent.type)}"
            f"{' literal' if parent.is_literal else ''}, not {kind}"
            f"{' data' if not parent.is_literal else ''}",
        )
        return None
    if port is not None and not _fits_port(s, node, fld, port, parent.type):
        return None
    inp = replace(parent, name=name, type=kind or parent.type, mode=mode or parent.mode)
    return stage(s, inp)


def _fits_port(s: Scope, node: yaml.Node, fld: str, port: Port, kind: str) -> bool:
    literal = kind in schema.LITERAL_INPUT_TYPES
    if port.is_literal != literal or (not literal and kinds_clash(port.type, kind)):
        s.r.error(
            node,
            fld,
            f"component {s.component} declares input '{port.name}' as {port.type}, found {kind}",
        )
        return False
    return True


def _read_input_object(
    s: Scope, name: str, node: yaml.Node, fld: str, keys: dict[str, Entry], port: Port | None
) -> Input | None:
    for key in ("description", "datastore", "path_on_compute"):
        if key in keys:
            get_str(s.r, keys[key].value, keys[key].field)
    optional = bool(port and port.optional)
    if "optional" in keys:
        optional = bool(get_bool(s.r, keys["optional"].value, keys["optional"].field))
    path_entry = keys.get("path")
    ref = None
    if (
        path_entry is not None
        and isinstance(path_entry.value, yaml.ScalarNode)
        and path_entry.value.tag == STR
    ):
        ref = whole_ref(str(path_entry.value.value))
    literal = keys.get("value") or keys.get("default")
    kind: str | None = None
    if "type" in keys:
        kind = choice(s, keys["type"], schema.INPUT_TYPES, "input type")
        if kind is None:
            return None
    elif port is not None:
        kind = port.type
    elif literal is not None and path_entry is None and isinstance(literal.value, yaml.ScalarNode):
        kind = _LITERAL_TAGS.get(literal.value.tag, "string")
    if port is not None and kind is not None and not _fits_port(s, node, fld, port, kind):
        return None
    if kind in schema.LITERAL_INPUT_TYPES:
        return _literal_object(s, name, node, fld, kind, keys, literal, optional, port)
    mode = None
    if "mode" in keys:
        allowed = schema.INPUT_MODES[kind or "uri_folder"]
        mode = choice(s, keys["mode"], allowed, f"mode for {kind or 'uri_folder'}")
        if mode is None:
            return None
    if ref is not None and path_entry is not None:
        s.note(path_entry.field, path_entry.value)
        return _bound_input(s, name, path_entry.value, path_entry.field, ref, kind, mode, port)
    kind = kind or "uri_folder"
    mode = mode or (port.mode if port else None) or "ro_mount"
    if path_entry is None or is_null(path_entry.value):
        if optional:
            return Input(name, kind, None, mode, optional=True, provided=False)
        s.r.error(
            node,
            fld,
            f"input '{name}' of type {kind} needs a path",
            "add 'path: ./...' (or 'optional: true' if the step can do without it)",
        )
        return None
    text = get_str(s.r, path_entry.value, path_entry.field)
    if text is not None and "${{" in text:
        s.r.error(
            path_entry.value,
            path_entry.field,
            f"a binding must be the whole path, found '{text}'",
            "write path: ${{parent.inputs.<name>}} or a local path",
        )
        return None
    path = local_path(s, path_entry.value, path_entry.field, text) if text else None
    if path is None:
        return None
    s.note(path_entry.field, path_entry.value)
    check_exists(s, path_entry.value, path_entry.field, kind, path)
    return stage(s, Input(name, kind, path, mode, optional=optional))


def _a(kind: str) -> str:
    return f"an {kind}" if kind[0] in "aeio" else f"a {kind}"  # "a uri_file"


def _literal(
    s: Scope,
    name: str,
    value: yaml.Node,
    fld: str,
    kind: str | None,
    port: Port | None,
    optional: bool = False,
) -> Input | None:
    """A literal input (``kind`` None: from the YAML tag), checked against the port."""
    if port is not None and not port.is_literal:
        s.r.error(
            value,
            fld,
            f"component {s.component} declares input '{name}' as "
            f"{port.type} data, found {describe(value)}",
            f"write {name}: {{type: {port.type}, path: ./...}}",
        )
        return None
    if not isinstance(value, yaml.ScalarNode) or value.tag not in _ACCEPTS.get(
        kind or "string", ()
    ):
        s.r.error(value, fld, f"expected {_a(kind or 'string')}, found {describe(value)}")
        return None
    kind = kind or _LITERAL_TAGS.get(value.tag, "string")
    text = literal_text(value)
    if port is not None and port.enum is not None and text not in port.enum:
        s.r.error(
            value,
            fld,
            f"'{text}' is not one of the values component {s.component} "
            f"allows for '{name}': {', '.join(port.enum)}",
            did_you_mean(text, port.enum),
        )
        return None
    if (
        port is not None
        and kind in ("integer", "number")
        and (
            (port.low is not None and float(text) < port.low)
            or (port.high is not None and float(text) > port.high)
        )
    ):
        span = (
            f"[{'' if port.low is None else f'{port.low:g}'}, "
            f"{'' if port.high is None else f'{port.high:g}'}]"
        )
        s.r.error(value, fld, f"expected a value in {span} for '{name}', found {text}")
        return None
    return Input(name, kind, None, "direct", text, optional=optional)


def _literal_object(
    s: Scope,
    name: str,
    node: yaml.Node,
    fld: str,
    kind: str,
    keys: dict[str, Entry],
    literal: Entry | None,
    optional: bool,
    port: Port | None,
) -> Input | None:
    for key in ("path", "mode"):
        if key in keys:
            s.r.error(
                keys[key].key,
                keys[key].field,
                f"'{key}' applies to data inputs, not to {_a(kind)} literal",
            )
    if literal is None:
        if optional:
            return Input(name, kind, None, "direct", optional=True, provided=False)
        s.r.error(
            node,
            fld,
            f"{kind} input '{name}' needs a value",
            "add 'value: ...' (or 'default: ...')",
        )
        return None
    return _literal(s, name, literal.value, literal.field, kind, port, optional)
