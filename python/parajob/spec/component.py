"""Steps that name a component: ``component: ./file.yml`` (or an inline mapping).

    pipeline node --component: ./c.yml--> component file (own Source: messages point into it,
         |                                  relative paths are relative to its folder)
         |                                        |
         +--------- merge_node(): node keys win --+--> one mapping, read like an inline step
                                                  +--> Port / OutPort: declared inputs, outputs

The component's ``inputs``/``outputs`` declare ports (type, mode, optional, default, enum,
min, max); the node gives their values. Other fields merge key by key, node first; the
mappings ``resources``, ``retry_settings``, ``limits``, ``environment_variables`` and
``task`` merge one level deeper, so a node that sets ``retry_settings.max_retries`` keeps the
component's ``timeout`` (the mnist example relies on it). Registered components
(``azureml:name:version``) cannot be fetched and are errors that say so.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import yaml

from parajob.spec import schema
from parajob.spec.ports import OutPort, Port
from parajob.spec.report import Reporter, Source, did_you_mean, shown_path
from parajob.spec.yaml_nodes import (
    BOOL,
    FLOAT,
    INT,
    STR,
    Entry,
    compose,
    describe,
    entries,
    get_bool,
    get_str,
    named_entries,
    read_mapping,
    to_python,
)

__all__ = ["Component", "load_component", "merge_node", "shown_path"]

_SUBMERGE = ("resources", "retry_settings", "limits", "environment_variables", "task")
_NOT_MERGED = ("inputs", "outputs", "$schema", "version", "name", "is_deterministic")
_LITERAL_TAGS = {
    "integer": (INT,),
    "number": (INT, FLOAT),
    "boolean": (BOOL,),
    "string": (STR, INT, FLOAT, BOOL),
}


@dataclass(frozen=True)
class Component:
    file: Path | None  # None: written inline in the pipeline
    shown: str  # how messages name it
    kind: str  # parallel | command
    keys: dict[str, Entry]
    in_ports: dict[str, Port]
    out_ports: dict[str, OutPort]
    node: yaml.Node  # its root, for messages


class ComponentCache:
    """Component files already read in this load (a file used by two steps is read, and its
    own mistakes reported, once)."""

    def __init__(self) -> None:
        self.by_file: dict[Path, Component | None] = {}


def load_component(
    r: Reporter, entry: Entry, folder: Path, node_kind: str | None, cache: ComponentCache
) -> Component | None:
    """Read the component a step's ``component:`` names; None after recording errors."""
    value = entry.value
    if isinstance(value, yaml.MappingNode):
        return _read_component(r, value, "the inline component", None, node_kind, entry)
    text = get_str(r, value, entry.field)
    if text is None:
        return None
    if text.startswith("azureml:") or "://" in text:
        r.error(
            value,
            entry.field,
            f"'{text}' is a registered component, which parajob cannot fetch",
            "give the component's YAML file, e.g. component: ./score.yml",
        )
        return None
    file = Path(os.path.normpath(folder / text))
    if file not in cache.by_file:
        cache.by_file[file] = _load_file(r, entry, text, file, node_kind)
    component = cache.by_file[file]
    if component is not None and node_kind is not None and component.kind != node_kind:
        r.error(
            value,
            entry.field,
            f"the step is type: {node_kind}, but component {text} is type: {component.kind}",
            f"write type: {component.kind}",
        )
        return None
    return component


def _load_file(
    r: Reporter, entry: Entry, text: str, file: Path, node_kind: str | None
) -> Component | None:
    try:
        content = file.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        names = sorted(p.name for p in file.parent.glob("*.y*ml")) if file.parent.is_dir() else []
        r.error(
            entry.value,
            entry.field,
            f"component file '{text}' does not exist (looked for {file})",
            did_you_mean(file.name, names),
        )
        return None
    except (OSError, UnicodeDecodeError) as exc:
        r.error(entry.value, entry.field, f"cannot read component file '{text}': {exc}")
        return None
    shown = shown_path(file)
    r.add_source(Source(shown, content, file.parent, True, file))
    root = compose(content, r, shown)
    if root is None:
        if not r.error_count:
            r.error((shown, None, None), "", "the component file is empty")
        return None
    return _read_component(r, root, shown, file, node_kind, entry)


def _read_component(
    r: Reporter, root: yaml.Node, shown: str, file: Path | None, node_kind: str | None, entry: Entry
) -> Component | None:
    if not isinstance(root, yaml.MappingNode):
        r.error(root, "", f"expected a component (a mapping), found {describe(root)}")
        return None
    kind = None
    for key, value in root.value:
        if isinstance(key, yaml.ScalarNode) and key.value == "type":
            kind = get_str(r, value, "type")
    if kind is None:
        r.error(
            root, "type", f"component {shown} has no 'type'", f"add type: {node_kind or 'parallel'}"
        )
        return None
    if kind not in schema.STEP_TYPES:
        r.error(
            root,
            "type",
            f"component {shown} is type '{kind}', which parajob cannot run",
            did_you_mean(kind, schema.STEP_TYPES) or "expected parallel or command",
        )
        return None
    allowed = (
        schema.PARALLEL_COMPONENT_KEYS if kind == "parallel" else schema.COMMAND_COMPONENT_KEYS
    )
    prefix = "" if file is not None else entry.field
    keys = read_mapping(r, root, prefix, allowed)
    if keys is None:
        return None
    for name in ("version", "$schema", "name"):
        if name in keys and isinstance(keys[name].value, yaml.ScalarNode):
            str(keys[name].value.value)  # any scalar: versions are often written as numbers
    if "is_deterministic" in keys:
        get_bool(r, keys["is_deterministic"].value, keys["is_deterministic"].field)
    in_ports = _in_ports(r, keys["inputs"]) if "inputs" in keys else {}
    out_ports = _out_ports(r, keys["outputs"]) if "outputs" in keys else {}
    return Component(file, shown, kind, keys, in_ports, out_ports, root)


def _in_ports(r: Reporter, entry: Entry) -> dict[str, Port]:
    ports: dict[str, Port] = {}
    for e in named_entries(r, entry.value, entry.field) or []:
        keys = read_mapping(
            r, e.value, e.field, schema.INPUT_PORT_KEYS, required=("type",), anchor=e.key
        )
        if keys is None or "type" not in keys:
            continue
        kind = get_str(r, keys["type"].value, keys["type"].field)
        if kind is not None and kind not in schema.INPUT_TYPES:
            r.error(
                keys["type"].value,
                keys["type"].field,
                f"unknown input type '{kind}'",
                did_you_mean(kind, schema.INPUT_TYPES),
            )
            kind = None
        if kind is None:
            continue
        optional = (
            bool(get_bool(r, keys["optional"].value, keys["optional"].field))
            if "optional" in keys
            else False
        )
        mode = None
        if "mode" in keys and kind not in schema.LITERAL_INPUT_TYPES:
            mode = get_str(r, keys["mode"].value, keys["mode"].field)
            mode = "ro_mount" if mode == "mount" else mode
            if mode is not None and mode not in schema.INPUT_MODES[kind]:
                r.error(
                    keys["mode"].value,
                    keys["mode"].field,
                    f"unknown mode for {kind} '{mode}'",
                    did_you_mean(mode, schema.INPUT_MODES[kind]),
                )
                mode = None
        default = keys["default"].value if "default" in keys else None
        if (
            default is not None
            and kind in _LITERAL_TAGS
            and not (isinstance(default, yaml.ScalarNode) and default.tag in _LITERAL_TAGS[kind])
        ):
            r.error(
                default,
                keys["default"].field,
                f"expected a {kind} default, found {describe(default)}",
            )
            default = None
        enum = None
        if "enum" in keys:
            value = to_python(keys["enum"].value)
            if isinstance(value, list) and value:
                enum = tuple(str(v) for v in value)
            else:
                r.error(
                    keys["enum"].value,
                    keys["enum"].field,
                    f"expected a list of values, found {describe(keys['enum'].value)}",
                )
        low, high = (_number(r, keys[k]) if k in keys else None for k in ("min", "max"))
        ports[str(e.key.value)] = Port(
            str(e.key.value), kind, e.value, optional, default, mode, enum, low, high
        )
    return ports


def _number(r: Reporter, entry: Entry) -> float | None:
    node = entry.value
    if isinstance(node, yaml.ScalarNode) and node.tag in (INT, FLOAT):
        return float(to_python(node))
    r.error(node, entry.field, f"expected a number, found {describe(node)}")
    return None


def _out_ports(r: Reporter, entry: Entry) -> dict[str, OutPort]:
    ports: dict[str, OutPort] = {}
    for e in named_entries(r, entry.value, entry.field) or []:
        kind, mode = "uri_folder", "rw_mount"
        if e.value is not None and not (
            isinstance(e.value, yaml.ScalarNode) and e.value.tag == "tag:yaml.org,2002:null"
        ):
            keys = read_mapping(r, e.value, e.field, schema.OUTPUT_PORT_KEYS, anchor=e.key)
            if keys is None:
                continue
            if "type" in keys:
                kind = get_str(r, keys["type"].value, keys["type"].field) or kind
                if kind not in schema.OUTPUT_TYPES:
                    r.error(
                        keys["type"].value,
                        keys["type"].field,
                        f"unknown output type '{kind}'",
                        did_you_mean(kind, schema.OUTPUT_TYPES),
                    )
                    continue
            if "mode" in keys:
                mode = get_str(r, keys["mode"].value, keys["mode"].field) or mode
                mode = "rw_mount" if mode == "mount" else mode
                if mode not in schema.OUTPUT_MODES:
                    r.error(
                        keys["mode"].value,
                        keys["mode"].field,
                        f"unknown output mode '{mode}'",
                        did_you_mean(mode, schema.OUTPUT_MODES),
                    )
                    continue
        ports[str(e.key.value)] = OutPort(str(e.key.value), kind, mode)
    return ports


def merge_node(node: yaml.MappingNode, component: Component) -> yaml.MappingNode:
    """The step as one mapping: the node's keys over the component's (``component:``
    removed; ``inputs``/``outputs`` are the node's only, read against the ports)."""
    mine = {str(k.value): (k, v) for k, v in entries(node) if isinstance(k, yaml.ScalarNode)}
    pairs: list[tuple[yaml.Node, yaml.Node]] = []
    for name, e in component.keys.items():
        if name in _NOT_MERGED:
            continue
        if name not in mine:
            pairs.append((e.key, e.value))
        else:
            key, value = mine[name]
            if (
                name in _SUBMERGE
                and isinstance(e.value, yaml.MappingNode)
                and isinstance(value, yaml.MappingNode)
            ):
                del mine[name]
                pairs.append((key, _merge_mapping(value, e.value)))
    pairs += [(k, v) for name, (k, v) in mine.items() if name != "component"]
    return yaml.MappingNode(node.tag, pairs, node.start_mark, node.end_mark)


def _merge_mapping(over: yaml.MappingNode, under: yaml.MappingNode) -> yaml.MappingNode:
    top = {str(k.value) for k, _ in entries(over) if isinstance(k, yaml.ScalarNode)}
    pairs = [
        (k, v)
        for k, v in entries(under)
        if not (isinstance(k, yaml.ScalarNode) and str(k.value) in top)
    ]
    pairs += list(entries(over))
    return yaml.MappingNode(over.tag, pairs, over.start_mark, over.end_mark)
