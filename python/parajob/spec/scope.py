"""The reading state shared by the readers of inputs and outputs, and local paths.

:class:`Scope` says where a step is read: its file's folder, the pipeline's ports, the step's
name, the outputs of the steps read before it, its component's ports, and where to note
field positions. :func:`local_path` turns what a YAML file says into an absolute path
(relative to the folder of the file the node is in; ``azureml://datastores/...`` through
:class:`~parajob.spec.places.Places`).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field, replace
from pathlib import Path

import yaml

from parajob.spec import schema
from parajob.spec.bindings import Ref, default_output_path
from parajob.spec.mltable import check_mltable
from parajob.spec.model import Input, Output
from parajob.spec.places import ASSET_URI, Places
from parajob.spec.report import Reporter, did_you_mean
from parajob.spec.yaml_nodes import BOOL, FLOAT, INT, STR, Entry, get_str, to_python

__all__ = ["Scope", "Port", "OutPort", "local_path", "literal_text", "NAME_PATTERN"]

NAME_PATTERN = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.-]+:")  # two letters or more: not "C:"
_LITERAL_TAGS = {INT: "integer", FLOAT: "number", BOOL: "boolean", STR: "string"}
_ACCEPTS = {
    "string": (STR, INT, FLOAT, BOOL),
    "integer": (INT,),
    "number": (INT, FLOAT),
    "boolean": (BOOL,),
}


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
        key = entry_field[len(self.prefix) + 1 :] if self.prefix else entry_field
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


def check_name(s: Scope, entry: Entry, what: str) -> bool:
    name = str(entry.key.value)
    if NAME_PATTERN.fullmatch(name):
        return True
    s.r.error(
        entry.key,
        entry.field,
        f"invalid {what} name '{name}'",
        "use letters, digits and '_', not starting with a digit",
    )
    return False


def local_path(s: Scope, node: yaml.Node, fld: str, text: str) -> Path | None:
    """``text`` as an absolute local path, or None + error. Relative paths are relative to
    the folder of the file ``node`` is in; datastore URIs go through ``s.places``."""
    if text.startswith("file:"):
        text = re.sub(r"^file:(//)?", "", text)
    elif (
        text.startswith("azureml://datastores/")
        or "/datastores/" in text
        and text.startswith("azureml://")
    ):
        try:
            found = s.places.datastore_path(text)
        except ValueError as exc:
            s.r.error(node, fld, str(exc))
            return None
        if found is None:
            s.r.error(
                node,
                fld,
                f"'{text}' is not a datastore path",
                "write azureml://datastores/<datastore>/paths/<path>",
            )
            return None
        name, path = found
        if path is None:
            s.r.error(
                node,
                fld,
                f"datastore '{name}' has no local folder",
                f"map it to one: --datastore {name}=PATH",
            )
        return path
    elif ASSET_URI.match(text):
        s.r.error(
            node,
            fld,
            f"'{text}' names a registered asset, which parajob cannot fetch",
            "give a local path, or azureml://datastores/<ds>/paths/<p> with --datastore <ds>=PATH",
        )
        return None
    elif SCHEME.match(text):
        s.r.error(
            node,
            fld,
            f"'{text}' is not a local path; parajob reads local files only",
            "copy the data to this machine and give its folder, relative to this file",
        )
        return None
    return Path(os.path.normpath(s.folder(node) / text))


def _datastore_hint(s: Scope, text: str) -> str | None:
    found = s.places.datastore_path(text) if text.startswith("azureml://") else None
    if found is None or s.places.is_mapped(found[0]):
        return None
    return f"datastore '{found[0]}' is not mapped; map it: --datastore {found[0]}=PATH"


def check_exists(s: Scope, node: yaml.Node, fld: str, kind: str, path: Path) -> None:
    text = str(node.value) if isinstance(node, yaml.ScalarNode) else str(path)
    if not path.exists():
        s.r.error(
            node, fld, f"path '{text}' does not exist (looked for {path})", _datastore_hint(s, text)
        )
    elif kind == "uri_file" and not path.is_file():
        s.r.error(
            node,
            fld,
            f"type uri_file expects a file, but '{text}' is a folder",
            "use type: uri_folder for a folder",
        )
    elif kind in ("uri_folder", "mltable") and not path.is_dir():
        if kind == "mltable" and path.name == "MLTable":
            check_mltable(s.r, path)  # the MLTable file itself: accepted, as by mltable
            return
        s.r.error(
            node,
            fld,
            f"type {kind} expects a folder, but '{text}' is a file",
            "use type: uri_file for a single file"
            if kind == "uri_folder"
            else "point path at the folder that holds the MLTable file",
        )
    elif kind == "mltable" and not (path / "MLTable").is_file():
        s.r.error(
            node,
            fld,
            f"no MLTable file in '{text}' (looked for {path / 'MLTable'})",
            "an mltable input is a folder with a file named MLTable; "
            "for plain files use type: uri_folder",
        )
    if kind == "mltable" and (path / "MLTable").is_file():
        check_mltable(s.r, path / "MLTable")


def choice(s: Scope, entry: Entry, allowed: tuple[str, ...], what: str) -> str | None:
    text = get_str(s.r, entry.value, entry.field)
    if text is None:
        return None
    if text not in allowed:
        hint = did_you_mean(text, allowed) or "expected one of: " + ", ".join(allowed)
        s.r.error(entry.value, entry.field, f"unknown {what} '{text}'", hint)
        return None
    return text


def parent_ref(
    s: Scope,
    node: yaml.Node,
    fld: str,
    ref: Ref,
    scope: str,
    ports: dict[str, Input] | dict[str, Output] | None,
) -> str | None:
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
            f"the pipeline declares {kind}s: {', '.join(ports)}"
            if ports
            else f"the pipeline has no {kind}s"
        )
        s.r.error(node, fld, f"{ref.text} names no pipeline {kind} '{ref.name}'", hint)
        return None
    return ref.name


def producer(s: Scope, node: yaml.Node, fld: str, ref: Ref) -> tuple[Output | None, bool]:
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
            f"step '{ref.step}' has outputs: {', '.join(outputs)}"
            if outputs
            else f"step '{ref.step}' declares no outputs"
        )
        s.r.error(node, fld, f"{ref.text}: step '{ref.step}' has no output '{ref.name}'", hint)
        return None, False
    out = outputs[ref.name]
    run_dir = s.places.run_dir
    path = out.path or (default_output_path(run_dir, ref.step, ref.name) if run_dir else None)
    return replace(out, path=path), True


def stage(s: Scope, inp: Input) -> Input:
    """A download input reads a copy under ``<run>/<step>/inputs/<name>``
    (docs/contract.md §1.3)."""
    run_dir = s.places.run_dir
    if inp.mode != "download" or inp.path is None or run_dir is None or s.step is None:
        return inp
    dest = run_dir / s.step / "inputs" / inp.name
    if inp.type == "uri_file":
        dest = dest / inp.path.name
    return replace(inp, path=dest, origin=inp.origin or inp.path)


def kinds_clash(a: str, b: str) -> bool:
    """A file where a folder is expected, or the other way round."""
    return (a == "uri_file") != (b == "uri_file")


# -- inputs -------------------------------------------------------------------------------
