"""The local paths of a pipeline's YAML mapping, and moving them to another folder.

A pipeline YAML's relative paths are relative to the file's folder (docs/contract.md
§1.3); an entity built in Python has them relative to the folder it was built in
(``Pipeline.base_dir``). Writing the YAML elsewhere (``dump(path)``) or comparing two
entities needs every local path found and rebased. These are the places paths live::

    inputs.<x>.path   outputs.<x>.path            (the pipeline's)
    jobs.<s>.inputs.<x>.path   jobs.<s>.outputs.<x>.path   jobs.<s>.component (a file)
    jobs.<s>.task.code   jobs.<s>.task.environment.conda_file      (parallel)
    jobs.<s>.code        jobs.<s>.environment.conda_file           (command)

Bindings (``${{...}}``), URIs (``azureml://``, ``https://``) and asset ids (``azureml:x:1``)
are not local paths and are left alone. A component file's own paths are relative to it and
move with it, so only the reference is rebased.
"""

from __future__ import annotations

import copy
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from parajob.entities.io import is_local_path

__all__ = ["map_paths", "absolute", "relative_to", "rebase_override"]

_PATH_KEYS = ("path", "code", "conda_file", "component")


def map_paths(tree: dict[str, Any], fn: Callable[[str], str]) -> dict[str, Any]:
    """A copy of a pipeline mapping with ``fn`` applied to each local path."""
    out = copy.deepcopy(tree)

    def ports(section: Any) -> None:
        for port in (section or {}).values() if isinstance(section, dict) else ():
            _one(port, "path", fn)

    ports(out.get("inputs"))
    ports(out.get("outputs"))
    for step in (out.get("jobs") or {}).values():
        if not isinstance(step, dict):
            continue
        ports(step.get("inputs"))
        ports(step.get("outputs"))
        _one(step, "component", fn)
        _one(step, "code", fn)
        _one(step.get("environment"), "conda_file", fn)
        task = step.get("task")
        _one(task, "code", fn)
        _one(task.get("environment") if isinstance(task, dict) else None, "conda_file", fn)
    return out


def _one(mapping: Any, key: str, fn: Callable[[str], str]) -> None:
    if isinstance(mapping, dict) and is_local_path(mapping.get(key)):
        mapping[key] = fn(mapping[key])


def absolute(base: Path) -> Callable[[str], str]:
    """Relative paths made absolute against ``base``; absolute ones normalised."""
    return lambda p: os.path.normpath(os.path.join(base, os.path.expanduser(p)))


def relative_to(base: Path, target: Path) -> Callable[[str], str]:
    """Paths relative to ``base`` rewritten relative to ``target`` (absolute ones kept)."""

    def move(p: str) -> str:
        if os.path.isabs(os.path.expanduser(p)):
            return p
        rel = os.path.relpath(os.path.join(base, p), target)
        return rel if rel.startswith("..") else "./" + rel if rel != "." else "."

    return move


def rebase_override(text: str, base: Path) -> str:
    """A ``--set KEY=VALUE`` with the local paths in its value made absolute (``--set``
    paths are relative to the pipeline file, which moves when the entity is dumped)."""
    import yaml

    key, eq, value_text = text.partition("=")
    if not eq:
        return text
    try:
        value = yaml.safe_load(value_text)
    except yaml.YAMLError:
        return text  # reported by the spec with the --set it came from
    last = key.strip().split(".")[-1]
    fn = absolute(base)
    changed: Any = value
    if last in _PATH_KEYS and is_local_path(value):
        changed = fn(value)
    elif isinstance(value, dict):
        changed = copy.deepcopy(value)
        for name in _PATH_KEYS:
            _one(changed, name, fn)
        for sub in ("task", "environment"):
            if isinstance(changed.get(sub), dict):
                for name in _PATH_KEYS:
                    _one(changed[sub], name, fn)
    if changed == value:
        return text
    dumped = yaml.safe_dump(changed, default_flow_style=True, width=1 << 20).strip()
    return f"{key}={dumped.removesuffix('...').strip()}"
