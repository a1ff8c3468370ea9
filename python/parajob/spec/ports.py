"""Inputs and outputs, of the pipeline and of its steps.

An input is written one of three ways::

    x: 5                                   # a literal (string, integer, number, boolean)
    x: ${{parent.inputs.y}}                # a step input bound to a pipeline input
    x: {type: uri_folder, path: ./data, mode: download}   # data; path may be a binding too

Local paths are relative to the YAML file's folder; they are made absolute and checked here,
once, where they are written (a step input bound to a pipeline input is not checked again).
Outputs are ``{type, mode, path}`` mappings, empty (all defaults), or
``${{parent.outputs.y}}``. Cloud locations (``azureml:``, ``https:``) are refused for now:
mapping datastores to local folders is a later issue.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field, replace
from pathlib import Path

import yaml

from parajob.spec import schema
from parajob.spec.bindings import Ref, whole_ref
from parajob.spec.model import Input, Output
from parajob.spec.report import Reporter, did_you_mean
from parajob.spec.yaml_nodes import (
    BOOL,
    FLOAT,
    INT,
    STR,
    Entry,
    describe,
    get_bool,
    get_str,
    is_null,
    named_entries,
    read_mapping,
    to_python,
)

__all__ = ["Scope", "read_inputs", "read_outputs", "NAME_PATTERN"]

NAME_PATTERN = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.-]+:")  # two letters or more: not "C:"
_LITERAL_TAGS = {INT: "integer", FLOAT: "number", BOOL: "boolean", STR: "string"}


@dataclass
class Scope:
    """Where ports are read: the file's folder, the pipeline's ports (None at the top level
    and in a single-job file), and where to note field positions for the step."""

    r: Reporter
    base: Path
    parent_inputs: dict[str, Input] | None = None
    parent_outputs: dict[str, Output] | None = None
    prefix: str = ""
    locations: dict[str, tuple[int, int]] = field(default_factory=dict)

    def note(self, entry_field: str, node: yaml.Node) -> None:
        """Remember where ``entry_field`` (a full dotted path) is, relative to ``prefix``."""
        key = entry_field[len(self.prefix) + 1:] if self.prefix else entry_field
        line, column = Reporter.position(node)
        if line is not None and column is not None:
            self.locations[key] = (line, column)


def literal_text(node: yaml.ScalarNode) -> str:
    """How a literal looks once bound: ``5``, ``0.5``, ``True`` (Python's ``str``)."""
    return str(to_python(node)) if node.tag != STR else str(node.value)


def _check_name(s: Scope, entry: Entry, what: str) -> bool:
    name = str(entry.key.value)
    if NAME_PATTERN.fullmatch(name):
        return True
    s.r.error(entry.key, entry.field, f"invalid {what} name '{name}'",
              "use letters, digits and '_', not starting with a digit")
    return False


def local_path(s: Scope, node: yaml.Node, fld: str, text: str) -> Path | None:
    """``text`` as an absolute local path (relative to the YAML folder), or None + error."""
    if text.startswith("file:"):
        text = re.sub(r"^file:(//)?", "", text)
    elif _SCHEME.match(text):
        s.r.error(node, fld, f"'{text}' is not a local path; parajob reads local files only",
                  "copy the data to this machine and give its folder, relative to this file")
        return None
    return Path(os.path.normpath(s.base / text))


def _check_exists(s: Scope, node: yaml.Node, fld: str, kind: str, path: Path) -> None:
    text = str(node.value) if isinstance(node, yaml.ScalarNode) else str(path)
    if not path.exists():
        s.r.error(node, fld, f"path '{text}' does not exist (looked for {path})")
    elif kind == "uri_file" and not path.is_file():
        s.r.error(node, fld, f"type uri_file expects a file, but '{text}' is a folder",
                  "use type: uri_folder for a folder")
    elif kind in ("uri_folder", "mltable") and not path.is_dir():
        s.r.error(node, fld, f"type {kind} expects a folder, but '{text}' is a file",
                  "use type: uri_file for a single file" if kind == "uri_folder"
                  else "point path at the folder that holds the MLTable file")
    elif kind == "mltable" and not (path / "MLTable").is_file():
        s.r.error(node, fld, f"no MLTable file in '{text}' (looked for {path / 'MLTable'})",
                  "an mltable input is a folder with a file named MLTable; "
                  "for plain files use type: uri_folder")


def _choice(s: Scope, entry: Entry, allowed: tuple[str, ...], what: str) -> str | None:
    text = get_str(s.r, entry.value, entry.field)
    if text is None:
        return None
    if text not in allowed:
        hint = did_you_mean(text, allowed) or "expected one of: " + ", ".join(allowed)
        s.r.error(entry.value, entry.field, f"unknown {what} '{text}'", hint)
        return None
    return text


def _parent_ref(s: Scope, node: yaml.Node, fld: str, ref: Ref, scope: str,
                ports: dict[str, Input] | dict[str, Output] | None) -> str | None:
    """The name of the pipeline port ``ref`` binds, or None after an error."""
    if ref.scope == "parent.jobs":
        s.r.error(node, fld, f"{ref.text}: binding to another step's output is not supported "
                  "yet", "run the producing step separately and give its output folder as path")
        return None
    if ports is None or ref.scope != scope:
        where = "outside a pipeline step" if ports is None else "here"
        s.r.error(node, fld, f"{ref.text} cannot be used {where}",
                  f"expected ${{{{{scope}.<name>}}}}" if ports is not None else None)
        return None
    if ref.name not in ports:
        kind = scope.split(".")[1][:-1]
        hint = did_you_mean(ref.name, ports) or (
            f"the pipeline declares {kind}s: {', '.join(ports)}" if ports
            else f"the pipeline has no {kind}s")
        s.r.error(node, fld, f"{ref.text} names no pipeline {kind} '{ref.name}'", hint)
        return None
    return ref.name


def read_inputs(s: Scope, node: yaml.Node, fld: str) -> dict[str, Input]:
    """Read an ``inputs:`` mapping. An input with errors is kept as a placeholder (a
    ``uri_folder`` with no path) so that its uses do not cause follow-on errors; the
    loader raises anyway, so the placeholder never reaches a caller."""
    out: dict[str, Input] = {}
    for entry in named_entries(s.r, node, fld) or []:
        name = str(entry.key.value)
        if _check_name(s, entry, "input"):
            s.note(entry.field, entry.value)
            out[name] = _read_input(s, entry) or Input(name, "uri_folder", None)
    return out


def _read_input(s: Scope, entry: Entry) -> Input | None:
    name, node, fld = str(entry.key.value), entry.value, entry.field
    if is_null(node):
        s.r.error(node, fld, f"input '{name}' has no value",
                  "give a literal, ${{parent.inputs.<name>}}, or {type, path, mode}")
        return None
    if isinstance(node, yaml.ScalarNode):
        text = str(node.value)
        ref = whole_ref(text) if node.tag == STR else None
        if ref is not None:
            found = _parent_ref(s, node, fld, ref, "parent.inputs", s.parent_inputs)
            if found is None or s.parent_inputs is None:
                return None
            return replace(s.parent_inputs[found], name=name)
        if "${{" in text:
            s.r.error(node, fld, f"a binding must be the whole value, found '{text}'")
            return None
        return Input(name, _LITERAL_TAGS.get(node.tag, "string"), None, "direct",
                     literal_text(node))
    keys = read_mapping(s.r, node, fld, schema.INPUT_KEYS, anchor=entry.key)
    return None if keys is None else _read_input_object(s, name, node, fld, keys)


def _read_input_object(s: Scope, name: str, node: yaml.Node, fld: str,
                       keys: dict[str, Entry]) -> Input | None:
    for key in ("description", "datastore", "path_on_compute"):
        if key in keys:
            get_str(s.r, keys[key].value, keys[key].field)
    if "optional" in keys:
        get_bool(s.r, keys["optional"].value, keys["optional"].field)
    parent: Input | None = None
    path_entry = keys.get("path")
    if path_entry is not None and isinstance(path_entry.value, yaml.ScalarNode):
        ref = whole_ref(str(path_entry.value.value))
        if ref is not None:
            found = _parent_ref(s, path_entry.value, path_entry.field, ref, "parent.inputs",
                                s.parent_inputs)
            if found is None or s.parent_inputs is None:
                return None
            parent = s.parent_inputs[found]
    literal = keys.get("value") or keys.get("default")
    kind: str | None = "uri_folder"
    if "type" in keys:
        kind = _choice(s, keys["type"], schema.INPUT_TYPES, "input type")
    elif parent is not None:
        kind = parent.type
    elif literal is not None and path_entry is None and isinstance(literal.value, yaml.ScalarNode):
        kind = _LITERAL_TAGS.get(literal.value.tag, "string")
    if kind is None:
        return None
    if kind in schema.LITERAL_INPUT_TYPES:
        return _literal_object(s, name, node, fld, kind, keys, literal)
    mode = parent.mode if parent else "ro_mount"
    if "mode" in keys:
        mode = _choice(s, keys["mode"], schema.INPUT_MODES[kind], f"mode for {kind}") or mode
    if parent is not None:
        if parent.is_literal:
            s.r.error(path_entry.value if path_entry else node, fld,
                      f"pipeline input '{parent.name}' is {_a(parent.type)} literal, not {kind} "
                      "data")
            return None
        return Input(name, kind, parent.path, mode)
    if path_entry is None or is_null(path_entry.value):
        s.r.error(node, fld, f"input '{name}' of type {kind} needs a path")
        return None
    text = get_str(s.r, path_entry.value, path_entry.field)
    path = local_path(s, path_entry.value, path_entry.field, text) if text else None
    if path is None:
        return None
    s.note(path_entry.field, path_entry.value)
    _check_exists(s, path_entry.value, path_entry.field, kind, path)
    return Input(name, kind, path, mode)


def _a(kind: str) -> str:
    return f"an {kind}" if kind[0] in "aeiou" else f"a {kind}"


def _literal_object(s: Scope, name: str, node: yaml.Node, fld: str, kind: str,
                    keys: dict[str, Entry], literal: Entry | None) -> Input | None:
    for key in ("path", "mode"):
        if key in keys:
            s.r.error(keys[key].key, keys[key].field,
                      f"'{key}' applies to data inputs, not to {_a(kind)} literal")
    if literal is None:
        s.r.error(node, fld, f"{kind} input '{name}' needs a value",
                  "add 'value: ...' (or 'default: ...')")
        return None
    value = literal.value
    ok = {"string": (STR, INT, FLOAT, BOOL), "integer": (INT,), "number": (INT, FLOAT),
          "boolean": (BOOL,)}[kind]
    if not isinstance(value, yaml.ScalarNode) or value.tag not in ok:
        s.r.error(value, literal.field, f"expected {_a(kind)}, found {describe(value)}")
        return None
    return Input(name, kind, None, "direct", literal_text(value))


def read_outputs(s: Scope, node: yaml.Node, fld: str) -> dict[str, Output]:
    """Read an ``outputs:`` mapping (placeholders for outputs with errors, as for inputs)."""
    out: dict[str, Output] = {}
    for entry in named_entries(s.r, node, fld) or []:
        name = str(entry.key.value)
        if _check_name(s, entry, "output"):
            s.note(entry.field, entry.value)
            out[name] = _read_output(s, entry) or Output(name)
    return out


def _read_output(s: Scope, entry: Entry) -> Output | None:
    name, node, fld = str(entry.key.value), entry.value, entry.field
    if is_null(node):
        return Output(name)
    if isinstance(node, yaml.ScalarNode) and node.tag == STR and whole_ref(str(node.value)):
        ref = whole_ref(str(node.value))
        assert ref is not None
        found = _parent_ref(s, node, fld, ref, "parent.outputs", s.parent_outputs)
        if found is None or s.parent_outputs is None:
            return None
        return replace(s.parent_outputs[found], name=name)
    keys = read_mapping(s.r, node, fld, schema.OUTPUT_KEYS, anchor=entry.key)
    if keys is None:
        return None
    for key in ("description", "datastore", "path_on_compute", "name", "version"):
        if key in keys:
            get_str(s.r, keys[key].value, keys[key].field, allow_empty=True)
    kind = _choice(s, keys["type"], schema.OUTPUT_TYPES, "output type") if "type" in keys \
        else "uri_folder"
    mode = _choice(s, keys["mode"], schema.OUTPUT_MODES, "output mode") if "mode" in keys \
        else "rw_mount"
    path = None
    if "path" in keys and not is_null(keys["path"].value):
        path = _output_path(s, keys["path"], kind or "uri_folder")
    if kind is None or mode is None:
        return None
    return Output(name, kind, path, mode)


def _output_path(s: Scope, entry: Entry, kind: str) -> Path | None:
    text = get_str(s.r, entry.value, entry.field)
    if text is None:
        return None
    if "${{" in text:
        s.r.error(entry.value, entry.field, f"bindings in output paths are not supported yet: "
                  f"'{text}'", "give a local path, or leave path out to use the run folder")
        return None
    path = local_path(s, entry.value, entry.field, text)
    if path is not None:
        s.note(entry.field, entry.value)
        if kind == "uri_file" and path.is_dir():
            s.r.error(entry.value, entry.field, f"type uri_file output '{text}' is a folder")
        elif kind != "uri_file" and path.is_file():
            s.r.error(entry.value, entry.field, f"type {kind} output '{text}' is a file")
    return path
