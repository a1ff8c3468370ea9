"""Inputs and outputs, of the pipeline and of its steps.

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

import os
import re
from dataclasses import dataclass, field, replace
from pathlib import Path

import yaml

from parajob.spec import schema
from parajob.spec.bindings import Ref, default_output_path, find_refs, substitute, unterminated, \
    whole_ref
from parajob.spec.mltable import check_mltable
from parajob.spec.model import Input, Output
from parajob.spec.places import ASSET_URI, OUTPUT_PATH_NAMES, Places
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

__all__ = ["Scope", "Port", "OutPort", "read_inputs", "read_outputs", "local_path",
           "NAME_PATTERN", "literal_text"]

NAME_PATTERN = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.-]+:")  # two letters or more: not "C:"
_LITERAL_TAGS = {INT: "integer", FLOAT: "number", BOOL: "boolean", STR: "string"}
_ACCEPTS = {"string": (STR, INT, FLOAT, BOOL), "integer": (INT,), "number": (INT, FLOAT),
            "boolean": (BOOL,)}


@dataclass(frozen=True)
class Port:
    """An input a component declares."""

    name: str
    type: str
    node: yaml.Node  # the declaration, for messages
    optional: bool = False
    default: yaml.Node | None = None
    mode: str | None = None
    enum: tuple[str, ...] | None = None
    low: float | None = None
    high: float | None = None

    @property
    def is_literal(self) -> bool:
        return self.type in schema.LITERAL_INPUT_TYPES


@dataclass(frozen=True)
class OutPort:
    """An output a component declares: its type and mode."""

    name: str
    type: str
    mode: str


@dataclass
class Scope:
    """Where ports are read: the file's folder, the pipeline's ports (None at the top level
    and in a single-job file), the step being read, the outputs of the steps read before it,
    the component's ports, and where to note field positions for the step."""

    r: Reporter
    base: Path
    parent_inputs: dict[str, Input] | None = None
    parent_outputs: dict[str, Output] | None = None
    prefix: str = ""
    locations: dict[str, tuple[int, int]] = field(default_factory=dict)
    location_files: dict[str, Path] = field(default_factory=dict)
    step: str | None = None
    places: Places = field(default_factory=Places)
    producers: dict[str, dict[str, Output]] = field(default_factory=dict)
    steps: frozenset[str] = frozenset()
    in_ports: dict[str, Port] | None = None
    out_ports: dict[str, OutPort] | None = None
    component: str | None = None  # the component file as shown, when the step names one

    def note(self, entry_field: str, node: yaml.Node) -> None:
        """Remember where ``entry_field`` (a full dotted path) is, relative to ``prefix``."""
        key = entry_field[len(self.prefix) + 1:] if self.prefix else entry_field
        line, column = Reporter.position(node)
        if line is not None and column is not None:
            self.locations[key] = (line, column)
            source = self.r.source_of(node)
            if source.name != self.r.file and source.path is not None:
                self.location_files[key] = source.path

    def folder(self, node: yaml.Node) -> Path:
        """The folder relative paths in ``node`` are relative to."""
        return self.r.folder_of(node) or self.base


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
    """``text`` as an absolute local path, or None + error. Relative paths are relative to
    the folder of the file ``node`` is in; datastore URIs go through ``s.places``."""
    if text.startswith("file:"):
        text = re.sub(r"^file:(//)?", "", text)
    elif text.startswith("azureml://datastores/") or "/datastores/" in text \
            and text.startswith("azureml://"):
        try:
            found = s.places.datastore_path(text)
        except ValueError as exc:
            s.r.error(node, fld, str(exc))
            return None
        if found is None:
            s.r.error(node, fld, f"'{text}' is not a datastore path",
                      "write azureml://datastores/<datastore>/paths/<path>")
            return None
        name, path = found
        if path is None:
            s.r.error(node, fld, f"datastore '{name}' has no local folder",
                      f"map it to one: --datastore {name}=PATH")
        return path
    elif ASSET_URI.match(text):
        s.r.error(node, fld, f"'{text}' names a registered asset, which parajob cannot fetch",
                  "give a local path, or azureml://datastores/<ds>/paths/<p> with "
                  "--datastore <ds>=PATH")
        return None
    elif _SCHEME.match(text):
        s.r.error(node, fld, f"'{text}' is not a local path; parajob reads local files only",
                  "copy the data to this machine and give its folder, relative to this file")
        return None
    return Path(os.path.normpath(s.folder(node) / text))


def _datastore_hint(s: Scope, text: str) -> str | None:
    found = s.places.datastore_path(text) if text.startswith("azureml://") else None
    if found is None or s.places.is_mapped(found[0]):
        return None
    return f"datastore '{found[0]}' is not mapped; map it: --datastore {found[0]}=PATH"


def _check_exists(s: Scope, node: yaml.Node, fld: str, kind: str, path: Path) -> None:
    text = str(node.value) if isinstance(node, yaml.ScalarNode) else str(path)
    if not path.exists():
        s.r.error(node, fld, f"path '{text}' does not exist (looked for {path})",
                  _datastore_hint(s, text))
    elif kind == "uri_file" and not path.is_file():
        s.r.error(node, fld, f"type uri_file expects a file, but '{text}' is a folder",
                  "use type: uri_folder for a folder")
    elif kind in ("uri_folder", "mltable") and not path.is_dir():
        if kind == "mltable" and path.name == "MLTable":
            check_mltable(s.r, path)  # the MLTable file itself: accepted, as by mltable
            return
        s.r.error(node, fld, f"type {kind} expects a folder, but '{text}' is a file",
                  "use type: uri_file for a single file" if kind == "uri_folder"
                  else "point path at the folder that holds the MLTable file")
    elif kind == "mltable" and not (path / "MLTable").is_file():
        s.r.error(node, fld, f"no MLTable file in '{text}' (looked for {path / 'MLTable'})",
                  "an mltable input is a folder with a file named MLTable; "
                  "for plain files use type: uri_folder")
    if kind == "mltable" and (path / "MLTable").is_file():
        check_mltable(s.r, path / "MLTable")


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
    if ports is None or ref.scope != scope:
        where = "outside a pipeline step" if ports is None else "here"
        hint = f"expected ${{{{{scope}.<name>}}}}" if ports is not None else None
        if ref.scope == "parent.jobs" and scope == "parent.outputs":
            hint = "a step's output is bound by the steps that read it, not the other way"
        s.r.error(node, fld, f"{ref.text} cannot be used {where}", hint)
        return None
    if ref.name not in ports:
        kind = scope.split(".")[1][:-1]
        hint = did_you_mean(ref.name, ports) or (
            f"the pipeline declares {kind}s: {', '.join(ports)}" if ports
            else f"the pipeline has no {kind}s")
        s.r.error(node, fld, f"{ref.text} names no pipeline {kind} '{ref.name}'", hint)
        return None
    return ref.name


def _producer(s: Scope, node: yaml.Node, fld: str, ref: Ref) -> tuple[Output | None, bool]:
    """The output a ``${{parent.jobs.<step>.outputs.<o>}}`` binding names: (output, ok).

    (None, True): the producer is known but could not be read (its own errors, or a cycle,
    are reported elsewhere), so nothing more is said here. (None, False): an error was
    recorded. A step name that does not exist is reported by the dependency scan.
    """
    assert ref.step is not None
    if s.parent_inputs is None:
        s.r.error(node, fld, f"{ref.text} cannot be used outside a pipeline step")
        return None, False
    if ref.step not in s.steps or ref.step == s.step:
        return None, True  # reported by graph.scan_edges
    outputs = s.producers.get(ref.step)
    if outputs is None:
        return None, True
    if ref.name not in outputs:
        hint = did_you_mean(ref.name, outputs) or (
            f"step '{ref.step}' has outputs: {', '.join(outputs)}" if outputs
            else f"step '{ref.step}' declares no outputs")
        s.r.error(node, fld, f"{ref.text}: step '{ref.step}' has no output '{ref.name}'", hint)
        return None, False
    out = outputs[ref.name]
    run_dir = s.places.run_dir
    path = out.path or (default_output_path(run_dir, ref.step, ref.name) if run_dir else None)
    return replace(out, path=path), True


def _stage(s: Scope, inp: Input) -> Input:
    """A download input reads a copy under ``<run>/<step>/inputs/<name>`` (SPEC §1)."""
    run_dir = s.places.run_dir
    if inp.mode != "download" or inp.path is None or run_dir is None or s.step is None:
        return inp
    dest = run_dir / s.step / "inputs" / inp.name
    if inp.type == "uri_file":
        dest = dest / inp.path.name
    return replace(inp, path=dest, origin=inp.origin or inp.path)


def _kinds_clash(a: str, b: str) -> bool:
    """A file where a folder is expected, or the other way round."""
    return (a == "uri_file") != (b == "uri_file")


# -- inputs -------------------------------------------------------------------------------
def read_inputs(s: Scope, node: yaml.Node | None, fld: str,
                anchor: yaml.Node | None = None) -> dict[str, Input]:
    """Read an ``inputs:`` mapping (``node`` None: the step wrote none). An input with errors
    is kept as a placeholder (a ``uri_folder`` with no path) so that its uses do not cause
    follow-on errors; the loader raises anyway, so the placeholder never reaches a caller.
    With component ports, ports the node leaves out get their default, stay unprovided when
    optional, and are errors otherwise (reported at ``anchor``)."""
    out: dict[str, Input] = {}
    for entry in (named_entries(s.r, node, fld) if node is not None else []) or []:
        name = str(entry.key.value)
        if _check_name(s, entry, "input"):
            s.note(entry.field, entry.value)
            out[name] = _read_input(s, entry) or Input(name, "uri_folder", None)
    for name, port in (s.in_ports or {}).items():
        if name in out:
            continue
        if port.default is not None and isinstance(port.default, yaml.ScalarNode):
            out[name] = Input(name, port.type, None, "direct", literal_text(port.default),
                              optional=port.optional)
        elif port.optional:
            out[name] = Input(name, port.type, None, port.mode or "ro_mount", optional=True,
                              provided=False)
        else:
            line = port.node.start_mark.line + 1
            s.r.error(anchor or node, fld, f"missing input '{name}' ({port.type}), required by "
                      f"component {s.component} (line {line})",
                      f"give it under inputs:, e.g. {name}: "
                      + ("<value>" if port.is_literal else "{type: %s, path: ./...}" % port.type))
            out[name] = Input(name, port.type, None)
    return out


def _read_input(s: Scope, entry: Entry) -> Input | None:
    name, node, fld = str(entry.key.value), entry.value, entry.field
    port = None
    if s.in_ports is not None:
        port = s.in_ports.get(name)
        if port is None:
            hint = did_you_mean(name, s.in_ports) or (
                f"its inputs: {', '.join(s.in_ports)}" if s.in_ports else "it declares none")
            s.r.error(entry.key, fld, f"component {s.component} declares no input '{name}'", hint)
            return None
    if is_null(node):
        s.r.error(node, fld, f"input '{name}' has no value",
                  "give a literal, ${{parent.inputs.<name>}}, or {type, path, mode}")
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


def _bound_input(s: Scope, name: str, node: yaml.Node, fld: str, ref: Ref, kind: str | None,
                 mode: str | None, port: Port | None) -> Input | None:
    """An input whose value (or ``path:``) is ``${{parent.inputs.x}}`` or
    ``${{parent.jobs.s.outputs.o}}``; ``kind``/``mode`` as the input object says, if it does."""
    if ref.scope == "parent.jobs":
        out, ok = _producer(s, node, fld, ref)
        if out is None:
            return None if not ok else Input(name, kind or (port.type if port else "uri_folder"),
                                             None, mode or "ro_mount",
                                             producer=(str(ref.step), ref.name))
        kind = kind or (port.type if port and not port.is_literal else None) or out.type
        if kind in schema.LITERAL_INPUT_TYPES or _kinds_clash(kind, out.type):
            s.r.error(node, fld, f"input '{name}' is {_a(kind)} but {ref.text} is {_a(out.type)}",
                      f"declare the input as type: {out.type}")
            return None
        mode = mode or (port.mode if port else None) or "ro_mount"
        return _stage(s, Input(name, kind, out.path, mode, producer=(str(ref.step), ref.name)))
    found = _parent_ref(s, node, fld, ref, "parent.inputs", s.parent_inputs)
    if found is None or s.parent_inputs is None:
        return None
    parent = s.parent_inputs[found]
    if kind is not None and parent.is_literal != (kind in schema.LITERAL_INPUT_TYPES):
        s.r.error(node, fld, f"pipeline input '{parent.name}' is {_a(parent.type)}"
                  f"{' literal' if parent.is_literal else ''}, not {kind}"
                  f"{' data' if not parent.is_literal else ''}")
        return None
    if port is not None and not _fits_port(s, node, fld, port, parent.type):
        return None
    inp = replace(parent, name=name, type=kind or parent.type, mode=mode or parent.mode)
    return _stage(s, inp)


def _fits_port(s: Scope, node: yaml.Node, fld: str, port: Port, kind: str) -> bool:
    literal = kind in schema.LITERAL_INPUT_TYPES
    if port.is_literal != literal or (not literal and _kinds_clash(port.type, kind)):
        s.r.error(node, fld, f"component {s.component} declares input '{port.name}' as "
                  f"{port.type}, found {kind}")
        return False
    return True


def _read_input_object(s: Scope, name: str, node: yaml.Node, fld: str,
                       keys: dict[str, Entry], port: Port | None) -> Input | None:
    for key in ("description", "datastore", "path_on_compute"):
        if key in keys:
            get_str(s.r, keys[key].value, keys[key].field)
    optional = bool(port and port.optional)
    if "optional" in keys:
        optional = bool(get_bool(s.r, keys["optional"].value, keys["optional"].field))
    path_entry = keys.get("path")
    ref = None
    if path_entry is not None and isinstance(path_entry.value, yaml.ScalarNode) \
            and path_entry.value.tag == STR:
        ref = whole_ref(str(path_entry.value.value))
    literal = keys.get("value") or keys.get("default")
    kind: str | None = None
    if "type" in keys:
        kind = _choice(s, keys["type"], schema.INPUT_TYPES, "input type")
        if kind is None:
            return None
    elif port is not None:
        kind = port.type
    elif literal is not None and path_entry is None and isinstance(literal.value,
                                                                   yaml.ScalarNode):
        kind = _LITERAL_TAGS.get(literal.value.tag, "string")
    if port is not None and kind is not None and not _fits_port(s, node, fld, port, kind):
        return None
    if kind in schema.LITERAL_INPUT_TYPES:
        return _literal_object(s, name, node, fld, kind, keys, literal, optional, port)
    mode = None
    if "mode" in keys:
        allowed = schema.INPUT_MODES[kind or "uri_folder"]
        mode = _choice(s, keys["mode"], allowed, f"mode for {kind or 'uri_folder'}")
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
        s.r.error(node, fld, f"input '{name}' of type {kind} needs a path",
                  "add 'path: ./...' (or 'optional: true' if the step can do without it)")
        return None
    text = get_str(s.r, path_entry.value, path_entry.field)
    if text is not None and "${{" in text:
        s.r.error(path_entry.value, path_entry.field, f"a binding must be the whole path, found "
                  f"'{text}'", "write path: ${{parent.inputs.<name>}} or a local path")
        return None
    path = local_path(s, path_entry.value, path_entry.field, text) if text else None
    if path is None:
        return None
    s.note(path_entry.field, path_entry.value)
    _check_exists(s, path_entry.value, path_entry.field, kind, path)
    return _stage(s, Input(name, kind, path, mode, optional=optional))


def _a(kind: str) -> str:
    return f"an {kind}" if kind[0] in "aeio" else f"a {kind}"  # "a uri_file"


def _literal(s: Scope, name: str, value: yaml.Node, fld: str, kind: str | None,
             port: Port | None, optional: bool = False) -> Input | None:
    """A literal input (``kind`` None: from the YAML tag), checked against the port."""
    if port is not None and not port.is_literal:
        s.r.error(value, fld, f"component {s.component} declares input '{name}' as "
                  f"{port.type} data, found {describe(value)}",
                  f"write {name}: {{type: {port.type}, path: ./...}}")
        return None
    if not isinstance(value, yaml.ScalarNode) or value.tag not in _ACCEPTS.get(
            kind or "string", ()):
        s.r.error(value, fld, f"expected {_a(kind or 'string')}, found {describe(value)}")
        return None
    kind = kind or _LITERAL_TAGS.get(value.tag, "string")
    text = literal_text(value)
    if port is not None and port.enum is not None and text not in port.enum:
        s.r.error(value, fld, f"'{text}' is not one of the values component {s.component} "
                  f"allows for '{name}': {', '.join(port.enum)}", did_you_mean(text, port.enum))
        return None
    if port is not None and kind in ("integer", "number") and (
            (port.low is not None and float(text) < port.low)
            or (port.high is not None and float(text) > port.high)):
        span = f"[{'' if port.low is None else f'{port.low:g}'}, " \
               f"{'' if port.high is None else f'{port.high:g}'}]"
        s.r.error(value, fld, f"expected a value in {span} for '{name}', found {text}")
        return None
    return Input(name, kind, None, "direct", text, optional=optional)


def _literal_object(s: Scope, name: str, node: yaml.Node, fld: str, kind: str,
                    keys: dict[str, Entry], literal: Entry | None, optional: bool,
                    port: Port | None) -> Input | None:
    for key in ("path", "mode"):
        if key in keys:
            s.r.error(keys[key].key, keys[key].field,
                      f"'{key}' applies to data inputs, not to {_a(kind)} literal")
    if literal is None:
        if optional:
            return Input(name, kind, None, "direct", optional=True, provided=False)
        s.r.error(node, fld, f"{kind} input '{name}' needs a value",
                  "add 'value: ...' (or 'default: ...')")
        return None
    return _literal(s, name, literal.value, literal.field, kind, port, optional)


# -- outputs ------------------------------------------------------------------------------
def read_outputs(s: Scope, node: yaml.Node | None, fld: str) -> dict[str, Output]:
    """Read an ``outputs:`` mapping (placeholders for outputs with errors, as for inputs).
    With component ports, the node may only name declared outputs, and declared outputs it
    leaves out are read from the component."""
    out: dict[str, Output] = {}
    for entry in (named_entries(s.r, node, fld) if node is not None else []) or []:
        name = str(entry.key.value)
        port = None
        if s.out_ports is not None:
            port = s.out_ports.get(name)
            if port is None:
                hint = did_you_mean(name, s.out_ports) or (
                    f"its outputs: {', '.join(s.out_ports)}" if s.out_ports
                    else "it declares none")
                s.r.error(entry.key, entry.field, f"component {s.component} declares no "
                          f"output '{name}'", hint)
                continue
        if _check_name(s, entry, "output"):
            s.note(entry.field, entry.value)
            out[name] = _read_output(s, entry, port) or Output(name)
    for name, port in (s.out_ports or {}).items():
        if name not in out:
            out[name] = Output(name, port.type, None, port.mode)
    return out


def _read_output(s: Scope, entry: Entry, port: OutPort | None) -> Output | None:
    name, node, fld = str(entry.key.value), entry.value, entry.field
    default_type, default_mode = (port.type, port.mode) if port else ("uri_folder", "rw_mount")
    if is_null(node):
        return Output(name, default_type, None, default_mode)
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
        else default_type
    mode = _choice(s, keys["mode"], schema.OUTPUT_MODES, "output mode") if "mode" in keys \
        else default_mode
    path: Path | None = None
    written = None
    if "path" in keys and not is_null(keys["path"].value):
        path, written = _output_path(s, keys["path"], kind or "uri_folder", name)
    if kind is None or mode is None:
        return None
    return Output(name, kind, path, mode, written)


def _output_path(s: Scope, entry: Entry, kind: str, output: str) -> tuple[Path | None,
                                                                          str | None]:
    """(path, text as written when it had bindings or a datastore). Path None: not known
    without a run folder, or an error was recorded."""
    text = get_str(s.r, entry.value, entry.field)
    if text is None:
        return None, None
    s.note(entry.field, entry.value)
    written = text if ("${{" in text or text.startswith("azureml:")) else None
    resolved = _fill_templates(s, entry, text, output)
    if resolved is None:
        return None, written
    if resolved.startswith("azureml://"):
        try:
            found = s.places.datastore_path(resolved)
        except ValueError as exc:
            s.r.error(entry.value, entry.field, str(exc))
            return None, written
        if found is None:
            s.r.error(entry.value, entry.field, f"'{text}' is not a datastore path",
                      "write azureml://datastores/<datastore>/paths/<path>")
            return None, written
        path = found[1]
    elif ASSET_URI.match(resolved) or (_SCHEME.match(resolved)
                                       and not resolved.startswith("file:")):
        s.r.error(entry.value, entry.field, f"'{text}' is not a local path or a datastore path",
                  "write a path relative to this file, or "
                  "azureml://datastores/<datastore>/paths/<path>")
        return None, written
    else:
        path = local_path(s, entry.value, entry.field, resolved)
    if path is not None:
        if kind == "uri_file" and path.is_dir():
            s.r.error(entry.value, entry.field, f"type uri_file output '{text}' is a folder")
        elif kind != "uri_file" and path.is_file():
            s.r.error(entry.value, entry.field, f"type {kind} output '{text}' is a file")
    return path, written


def _fill_templates(s: Scope, entry: Entry, text: str, output: str) -> str | None:
    """``text`` with ``${{name}}``, ``${{default_datastore}}``, ``${{output_name}}`` put in;
    None after an error, or when a value is not known without a run folder."""
    broken = unterminated(text)
    if broken is not None:
        s.r.error(s.r.find(entry.value, broken), entry.field, f"malformed binding '{broken}'",
                  "write ${{name}}, ${{default_datastore}} or ${{output_name}}")
        return None
    bad = False
    for ref in find_refs(text):
        if ref.expr not in OUTPUT_PATH_NAMES:
            bad = True
            hint = did_you_mean(ref.expr, OUTPUT_PATH_NAMES) or \
                "an output path may use ${{name}}, ${{default_datastore}}, ${{output_name}}"
            s.r.error(s.r.find(entry.value, ref.text), entry.field,
                      f"{ref.text} cannot be used in an output path", hint)
    if bad:
        return None
    unknown = False

    def value_of(ref: Ref) -> str | None:
        nonlocal unknown
        value = s.places.template_value(ref.expr, s.step, output)
        unknown = unknown or value is None
        return value

    filled = substitute(text, value_of)
    return None if unknown else filled
