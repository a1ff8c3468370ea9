"""``parajob.Pipeline``: a pipeline job entity, built in Python or read from YAML.

Data flow::

    dsl.pipeline function call  --\\                       /--> to_yaml() -> str
                                   +--> Pipeline(jobs, ...) --> dump(path) -> a file that
    parajob.load(yaml)          --/        |                     `parajob run` accepts there
                                           +-- overrides (--set edits), datastores
                                               (what parajob.run(entity) runs it with)

Invariants:

* ``base_dir`` is the folder the entity's relative paths are relative to: where the
  pipeline was built (the working directory then), or the YAML file's folder.
* ``to_yaml()`` writes paths as they are (relative to ``base_dir``); ``dump(path)``
  rewrites them relative to the new file's folder, so the file runs from where it lies; the
  file is written whole or not at all (a temporary file renamed into place).
* Two entities are equal when their YAML mappings, with every local path made absolute
  against its ``base_dir``, are equal (``$schema`` aside), and so are their ``overrides``
  and ``datastores``: ``parajob.load(e.to_yaml()) == e``.
"""

from __future__ import annotations

import os
import re
import tempfile
from pathlib import Path
from typing import Any

import yaml

from parajob.entities.io import Input, Output, PipelineInput, UnexpectedAttributeError
from parajob.entities.nodes import Node
from parajob.entities.paths import absolute, map_paths, relative_to
from parajob.entities.render import render_value
from parajob.entities.settings import PipelineJobSettings, check_type
from parajob.errors import Diagnostic, ParajobError, ValidationError

__all__ = ["Pipeline"]

_STEP_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_-]*")
_HEAD = ("name", "display_name", "description", "experiment_name", "tags", "properties", "compute")


class Pipeline:
    """A pipeline job: ``jobs`` (name -> node), pipeline ``inputs``/``outputs``,
    ``settings`` and the descriptive fields of ``type: pipeline`` YAML.

    Made by calling a ``@parajob.dsl.pipeline`` function, by :func:`parajob.load`, or
    directly (``Pipeline(jobs={"score": node})``). Mutable, as the SDK's ``PipelineJob``
    (``job.settings.default_compute = "cpu-cluster"``).
    """

    def __init__(
        self,
        *,
        jobs: dict[str, Node] | None = None,
        inputs: dict[str, Any] | None = None,
        outputs: dict[str, Any] | None = None,
        name: str | None = None,
        display_name: str | None = None,
        description: str | None = None,
        experiment_name: str | None = None,
        tags: dict[str, str] | None = None,
        properties: dict[str, Any] | None = None,
        compute: str | None = None,
        settings: PipelineJobSettings | dict[str, Any] | None = None,
        base_dir: str | os.PathLike[str] | None = None,
        overrides: tuple[str, ...] = (),
        datastores: dict[str, Path] | None = None,
    ) -> None:
        check_type("jobs", jobs, dict)
        check_type("settings", settings, (dict, PipelineJobSettings))
        for key in jobs or {}:
            if not _STEP_NAME.fullmatch(key):  # the spec's rule for step names
                raise ValidationError(
                    f"invalid step name {key!r}: use letters, digits, '_' "
                    "and '-', starting with a letter or '_'",
                    "jobs",
                )
        self.jobs: dict[str, Node] = dict(jobs or {})
        self.inputs = dict(inputs or {})
        self.outputs = dict(outputs or {})
        self.name, self.display_name, self.description = name, display_name, description
        self.experiment_name = experiment_name
        self.tags: dict[str, str] = dict(tags or {})
        self.properties = properties
        self.compute = compute
        self.settings = (
            PipelineJobSettings(**settings)
            if isinstance(settings, dict)
            else settings or PipelineJobSettings()
        )
        self.base_dir = Path(os.path.abspath(base_dir if base_dir is not None else os.getcwd()))
        self.overrides: tuple[str, ...] = tuple(overrides)
        self.datastores: dict[str, Path] = {
            k: Path(os.path.abspath(v)) for k, v in (datastores or {}).items()
        }
        self.extra: dict[str, Any] = {}
        self.warnings: list[Diagnostic] = []  # from validation, when read by parajob.load

    @property
    def inputs(self) -> Ports:
        """The pipeline's inputs by name; ``job.inputs.data.path = ...`` as in the SDK."""
        return self._inputs

    @inputs.setter
    def inputs(self, value: dict[str, Any]) -> None:
        check_type("inputs", value, dict)
        self._inputs = Ports(value)

    @property
    def outputs(self) -> Ports:
        """The pipeline's outputs by name; ``job.outputs.scores.type = "uri_file"``."""
        return self._outputs

    @outputs.setter
    def outputs(self, value: dict[str, Any]) -> None:
        check_type("outputs", value, dict)
        self._outputs = Ports(value)

    # -- YAML -------------------------------------------------------------------------------
    def _to_dict(self) -> dict[str, Any]:
        """The YAML mapping, paths as written (relative to ``base_dir``)."""
        out: dict[str, Any] = {k: v for k, v in self.extra.items() if k == "$schema"}
        out["type"] = "pipeline"
        for key in _HEAD:
            value = getattr(self, key)
            if value not in (None, {}):
                out[key] = value
        settings = self.settings._to_dict()
        if settings:
            out["settings"] = settings
        if self.inputs:
            out["inputs"] = {k: _port(v) for k, v in self.inputs.items()}
        if self.outputs:
            out["outputs"] = {k: _port(v) for k, v in self.outputs.items()}
        names = {id(node): key for key, node in self.jobs.items()}
        out["jobs"] = {key: node._to_dict(names) for key, node in self.jobs.items()}
        out.update((k, v) for k, v in self.extra.items() if k != "$schema")
        return out

    def to_dict(self) -> dict[str, Any]:
        """The YAML mapping with every local path absolute."""
        return map_paths(self._to_dict(), absolute(self.base_dir))

    def to_yaml(self) -> str:
        """The pipeline as YAML text; relative paths stay relative to ``base_dir``
        (``parajob.load(text, base_dir=e.base_dir)`` reads it back from anywhere)."""
        return _dump(self._to_dict())

    def dump(self, path: str | os.PathLike[str]) -> Path:
        """Write the YAML to ``path`` (its folder must exist), with relative paths rebased
        so that ``parajob run <path>`` finds them; returns the absolute path written.
        Atomic: a temporary file in the same folder, renamed into place; on failure
        (ParajobError naming the file and the system's reason) nothing is left."""
        target = Path(os.path.abspath(path))
        text = _dump(map_paths(self._to_dict(), relative_to(self.base_dir, target.parent)))
        try:
            fd, tmp = tempfile.mkstemp(
                prefix=f".{target.name}.", suffix=".partial", dir=target.parent
            )
        except OSError as exc:
            raise ParajobError(
                f"cannot write {target}: {exc.strerror or exc}"
                + (" (its folder does not exist)" if not target.parent.is_dir() else "")
            ) from exc
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                f.write(text)
            os.replace(tmp, target)
        except BaseException as exc:
            os.unlink(tmp)
            if isinstance(exc, OSError):
                raise ParajobError(f"cannot write {target}: {exc.strerror or exc}") from exc
            raise
        return target

    def _normal(self) -> tuple[Any, ...]:
        tree = self.to_dict()
        tree.pop("$schema", None)  # names the schema for editors; means nothing to a run
        return (tree, self.overrides, self.datastores)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Pipeline) and self._normal() == other._normal()

    __hash__ = None  # type: ignore[assignment]  # mutable

    def __str__(self) -> str:
        return self.to_yaml()

    def __repr__(self) -> str:
        return f"Pipeline(jobs={list(self.jobs)}, base_dir={str(self.base_dir)!r})"


class Ports(dict[str, Any]):
    """``Pipeline.inputs`` / ``.outputs``: a dict whose keys are also attributes
    (``pipeline_job.outputs.scores.type = ...``, as the SDK's ``PipelineJob``); an unknown
    name is an error naming the valid ones."""

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__") or name not in self:
            if name.startswith("__"):
                raise AttributeError(name)
            raise UnexpectedAttributeError(name, list(self))
        return self[name]

    def __setattr__(self, name: str, value: Any) -> None:
        self[name] = value


def _port(value: Any) -> Any:
    if isinstance(value, (Input, Output)):
        return value._to_dict()
    if isinstance(value, PipelineInput):
        return render_value(value.data, {})
    return value


class _Dumper(yaml.SafeDumper):
    """Block style; multi-line strings (a folded ``program_arguments``) as ``|`` blocks."""


def _str(dumper: yaml.SafeDumper, value: str) -> yaml.Node:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _str)


def _dump(tree: dict[str, Any]) -> str:
    return yaml.dump(
        tree,
        Dumper=_Dumper,
        sort_keys=False,
        default_flow_style=False,
        allow_unicode=True,
        width=4096,
    )
