"""``parajob.load``: pipeline YAML (a file, or text) to a :class:`Pipeline` entity.

Data flow::

    path or YAML text --parajob.spec.load_pipeline (validation: SpecError with every
        problem, file:line:column)--> the same text, yaml.safe_load --> mapping
        --(a single parallel/command job: one step named as the CLI names it)-->
        nodes (Parallel / Command; keys not modelled kept in ``extra``) --> Pipeline

The entity keeps the text's values as written, not the spec's resolved ones (absolute
paths, defaults filled in): dumping it gives back the same pipeline, and ``load`` of that
dump an equal entity. ``set=`` edits are validated with the file but not applied to the
entity: they travel in ``Pipeline.overrides`` (their relative paths made absolute, as the
dump may move), for whoever runs it (``parajob.run``).
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from parajob.entities.io import Input, NodeInput, NodeOutput, Output
from parajob.entities.nodes import (
    _COMMAND_FIELDS,
    _COMMON_HEAD,
    _PARALLEL_FIELDS,
    Command,
    Node,
    Parallel,
    RunFunction,
)
from parajob.entities.paths import rebase_override
from parajob.entities.pipeline import _HEAD, Pipeline
from parajob.entities.settings import Environment, PipelineJobSettings
from parajob.errors import ValidationError

__all__ = ["load", "pipeline_from_dict"]

_STEP_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_-]*")
_TEXT_NAME = "<yaml text>"


def load(
    source: str | os.PathLike[str],
    *,
    set: Sequence[str] = (),  # noqa: A002 (the API's name)
    datastores: Mapping[str, str | os.PathLike[str]] | None = None,
    base_dir: str | os.PathLike[str] | None = None,
) -> Pipeline:
    """Read a pipeline (or single job) YAML file, or YAML text, into a validated entity.

    ``source`` is a file when it is a path object, or a string of one line that names an
    existing file, ends in ``.yml``/``.yaml`` or has no ``:``; otherwise it is YAML text,
    whose relative paths resolve against ``base_dir`` (default: the working directory).
    ``set`` holds ``KEY=VALUE`` edits as ``parajob run --set`` takes them, ``datastores``
    name -> folder as ``--datastore``. Raises :class:`~parajob.errors.SpecError` (every
    problem, with file and line) for a YAML ``parajob run`` would refuse; prints nothing.
    """
    from parajob.spec import load_pipeline

    text, path, folder = _source(source, base_dir)
    stores = {k: Path(os.path.abspath(v)) for k, v in (datastores or {}).items()}
    spec = load_pipeline(path, datastores=stores, overrides=tuple(set), text=text)
    if text is None:
        with open(path, encoding="utf-8-sig") as f:  # -sig: as the spec reads it
            text = f.read()
    tree = yaml.safe_load(text)
    single = next(iter(spec.jobs)) if spec.single_job else None
    if single is not None:
        tree = {
            "type": "pipeline",
            "jobs": {single: {k: v for k, v in tree.items() if k != "$schema"}},
        }
    edits = tuple(rebase_override(_step_key(s, single), folder) for s in set)
    entity = pipeline_from_dict(tree, base_dir=folder, overrides=edits, datastores=stores)
    entity.warnings = list(spec.warnings)
    return entity


def _source(
    source: str | os.PathLike[str], base_dir: str | os.PathLike[str] | None
) -> tuple[str | None, str, Path]:
    """(text or None for a file, the path to give the spec, the folder paths resolve in)."""
    if isinstance(source, os.PathLike) or (
        "\n" not in source
        and (source.endswith((".yml", ".yaml")) or ":" not in source or os.path.isfile(source))
    ):  # one line without a key: a file name
        path = os.fspath(source)
        return None, path, Path(os.path.abspath(path)).parent
    folder = Path(os.path.abspath(base_dir if base_dir is not None else os.getcwd()))
    try:
        tree = yaml.safe_load(source)
    except yaml.YAMLError:
        tree = None  # the spec reports it, with its line
    name = _TEXT_NAME
    if isinstance(tree, dict) and tree.get("type") in ("parallel", "command"):
        # A single job is one step named after its file: text has none, so its name: field.
        given = str(tree.get("name") or "job")
        name = f"{given if _STEP_NAME.fullmatch(given) else 'job'}.yml"
    shown = name if base_dir is None else os.path.join(folder, name)
    return source, shown, folder


def _step_key(edit: str, single: str | None) -> str:
    """A single job's ``--set field=...`` as the one-step pipeline's ``jobs.<step>.field``."""
    if single is None or edit.startswith(f"jobs.{single}."):
        return edit
    return f"jobs.{single}.{edit}"


def pipeline_from_dict(
    tree: dict[str, Any],
    *,
    base_dir: Path,
    overrides: tuple[str, ...] = (),
    datastores: dict[str, Path] | None = None,
) -> Pipeline:
    """An entity from a ``type: pipeline`` mapping that the spec accepted."""
    p = Pipeline(base_dir=base_dir, overrides=overrides, datastores=datastores)
    rest = dict(tree)
    rest.pop("type", None)
    for key in _HEAD:
        if key in rest:
            setattr(p, key, rest.pop(key))
    if isinstance(rest.get("settings"), dict):
        p.settings = PipelineJobSettings(**rest.pop("settings"))
    p.inputs = {k: _input_value(v) for k, v in (rest.pop("inputs", None) or {}).items()}
    p.outputs = {k: _output_value(v) for k, v in (rest.pop("outputs", None) or {}).items()}
    p.jobs = {k: _node(v) for k, v in (rest.pop("jobs", None) or {}).items()}
    p.extra = rest
    return p


def _input_value(value: Any) -> Any:
    """An Input when the mapping says its type (else the raw value: a component's port may
    give the type, and writing a default one could contradict it)."""
    if isinstance(value, dict) and "type" in value:
        try:
            return Input(**value)
        except (ValidationError, TypeError):
            return value
    return value


def _output_value(value: Any) -> Any:
    if isinstance(value, dict) and "type" in value:
        return Output(**value)
    return value


# The keys a node's YAML may set, in the order the node classes write them (nodes.py owns the
# lists); a command's `environment` is read apart (below), since it becomes an Environment.
_NODE_KEYS = {
    "parallel": (*_COMMON_HEAD, *_PARALLEL_FIELDS, "is_deterministic"),
    "command": (
        *_COMMON_HEAD,
        *(key for key in _COMMAND_FIELDS if key != "environment"),
        "is_deterministic",
    ),
}


def _node(tree: dict[str, Any]) -> Node:
    rest = dict(tree)
    kind = rest.pop("type", None)
    node: Node = Command() if kind == "command" else Parallel()
    if kind is None:
        node.type = None  # type: ignore[assignment]  # the component gives it: not written
    for key in _NODE_KEYS["command" if kind == "command" else "parallel"]:
        if key in rest:
            try:
                setattr(node, key, rest[key])
            except ValidationError:
                continue  # the spec accepted it: keep it as written (in extra, below)
            del rest[key]
    if isinstance(node, Parallel) and isinstance(rest.get("task"), dict):
        node.task = RunFunction(**rest.pop("task"))
    if isinstance(node, Command) and "environment" in rest:
        env = rest.pop("environment")
        node.environment = Environment(**env) if isinstance(env, dict) else env
    node._inputs = {
        k: NodeInput(k, None, _input_value(v)) for k, v in (rest.pop("inputs", None) or {}).items()
    }
    node._outputs = {
        k: _node_output(node, k, v) for k, v in (rest.pop("outputs", None) or {}).items()
    }
    node.extra = rest
    return node


def _node_output(node: Node, name: str, value: Any) -> NodeOutput:
    out = NodeOutput(name, node)
    if isinstance(value, str):
        out.binding = value
    elif isinstance(value, dict):
        rest = dict(value)
        for key in ("type", "path", "mode", "description"):
            setattr(out, key, rest.pop(key, None))
        out.extra = rest
    return out
