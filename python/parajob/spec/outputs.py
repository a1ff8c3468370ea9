"""Outputs, of the pipeline and of its steps.

An output is ``{type, mode, path}`` (any may be left out: ``uri_folder``, ``rw_mount``, and
``<run>/<step>/outputs/<name>``), empty, or ``${{parent.outputs.y}}``. Its ``path`` may be
local (relative to the file it is written in) or ``azureml://datastores/<ds>/paths/<p>``,
and may use ``${{name}}``, ``${{default_datastore}}`` and ``${{output_name}}``
(:mod:`parajob.spec.places`). With component ports, the node may only name outputs the
component declares, and declared outputs it leaves out take the declared type and mode.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import yaml

from parajob.spec import schema
from parajob.spec.bindings import Ref, find_refs, substitute, unterminated, whole_ref
from parajob.spec.model import Output
from parajob.spec.places import ASSET_URI, OUTPUT_PATH_NAMES
from parajob.spec.report import did_you_mean
from parajob.spec.scope import SCHEME, OutPort, Scope, check_name, choice, local_path, parent_ref
from parajob.spec.yaml_nodes import STR, Entry, get_str, is_null, named_entries, read_mapping

__all__ = ["read_outputs"]


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
                    f"its outputs: {', '.join(s.out_ports)}" if s.out_ports else "it declares none"
                )
                s.r.error(
                    entry.key,
                    entry.field,
                    f"component {s.component} declares no output '{name}'",
                    hint,
                )
                continue
        if check_name(s, entry, "output"):
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
        found = parent_ref(s, node, fld, ref, "parent.outputs", s.parent_outputs)
        if found is None or s.parent_outputs is None:
            return None
        return replace(s.parent_outputs[found], name=name)
    keys = read_mapping(s.r, node, fld, schema.OUTPUT_KEYS, anchor=entry.key)
    if keys is None:
        return None
    for key in ("description", "datastore", "path_on_compute", "name", "version"):
        if key in keys:
            get_str(s.r, keys[key].value, keys[key].field, allow_empty=True)
    kind = (
        choice(s, keys["type"], schema.OUTPUT_TYPES, "output type")
        if "type" in keys
        else default_type
    )
    mode = (
        choice(s, keys["mode"], schema.OUTPUT_MODES, "output mode")
        if "mode" in keys
        else default_mode
    )
    path: Path | None = None
    written = None
    if "path" in keys and not is_null(keys["path"].value):
        path, written = _output_path(s, keys["path"], kind or "uri_folder", name)
    if kind is None or mode is None:
        return None
    return Output(name, kind, path, mode, written)


def _output_path(s: Scope, entry: Entry, kind: str, output: str) -> tuple[Path | None, str | None]:
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
            s.r.error(
                entry.value,
                entry.field,
                f"'{text}' is not a datastore path",
                "write azureml://datastores/<datastore>/paths/<path>",
            )
            return None, written
        path = found[1]
    elif ASSET_URI.match(resolved) or (SCHEME.match(resolved) and not resolved.startswith("file:")):
        s.r.error(
            entry.value,
            entry.field,
            f"'{text}' is not a local path or a datastore path",
            "write a path relative to this file, or azureml://datastores/<datastore>/paths/<path>",
        )
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
        s.r.error(
            s.r.find(entry.value, broken),
            entry.field,
            f"malformed binding '{broken}'",
            "write ${{name}}, ${{default_datastore}} or ${{output_name}}",
        )
        return None
    bad = False
    for ref in find_refs(text):
        if ref.expr not in OUTPUT_PATH_NAMES:
            bad = True
            hint = (
                did_you_mean(ref.expr, OUTPUT_PATH_NAMES)
                or "an output path may use ${{name}}, ${{default_datastore}}, ${{output_name}}"
            )
            s.r.error(
                s.r.find(entry.value, ref.text),
                entry.field,
                f"{ref.text} cannot be used in an output path",
                hint,
            )
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
