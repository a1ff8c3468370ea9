"""``load_pipeline``: a YAML file to a validated :class:`~parajob.spec.model.Pipeline`.

Data flow::

    file text --compose--> node tree --(duplicate keys?)--> read_* functions --> dataclasses
                                 \\                          /
                                  +---- Reporter: every problem, with line and column

Nothing is raised while reading: each problem is recorded and reading goes on, so the
user sees every mistake at once; :class:`~parajob.errors.SpecError` is raised at the end
when there was at least one error. Warnings travel on ``Pipeline.warnings`` (and in the
SpecError when there are errors too).

Two kinds of file are accepted: a pipeline (``type: pipeline`` with ``jobs:``) and, for
convenience, a single parallel job (``type: parallel`` at the top), which becomes a
one-step pipeline whose step is named after the file's stem.
"""

from __future__ import annotations

import os
import re
from dataclasses import replace
from pathlib import Path

import yaml

from parajob.errors import Diagnostic, SpecError
from parajob.spec import schema
from parajob.spec.model import Input, Output, Pipeline, Step
from parajob.spec.parallel import check_recorded, read_parallel_step
from parajob.spec.ports import Scope, read_inputs, read_outputs
from parajob.spec.report import Reporter, did_you_mean
from parajob.spec.yaml_nodes import (
    STR,
    Entry,
    compose,
    describe,
    field_join,
    get_bool,
    get_str,
    get_str_map,
    named_entries,
    read_mapping,
)

__all__ = ["load_pipeline"]

_STEP_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_-]*")


def load_pipeline(path: str | os.PathLike[str], *, run_dir: Path | None = None) -> Pipeline:
    """Load and validate a pipeline (or single parallel job) YAML file.

    ``run_dir``, when given, is where the run's outputs go: bindings to outputs without a
    ``path`` then resolve to ``<run_dir>/<step>/outputs/<name>``. Reads the file and checks
    that the paths it names exist; imports nothing. Raises SpecError (every problem found).
    """
    shown = os.fspath(path)
    file = Path(os.path.abspath(shown))
    sink: list[Diagnostic] = []
    text = _read_text(shown, file, sink)
    if text is None:
        raise SpecError(sink)
    r = Reporter(shown, text, sink)
    root = compose(text, r)
    pipeline: Pipeline | None = None
    if root is None and not r.error_count:
        r.error(None, "", "the file is empty", "a pipeline starts with 'type: pipeline'")
    elif isinstance(root, yaml.MappingNode):
        out_dir = Path(os.path.abspath(run_dir)) if run_dir is not None else None
        pipeline = _read_document(r, root, file, out_dir)
    elif root is not None:
        r.error(root, "", f"expected a mapping of fields at the top, found {describe(root)}")
    ordered = sorted(sink, key=lambda d: (d.file != shown, d.file, d.line or 0, d.column or 0))
    if pipeline is None or any(d.severity == "error" for d in ordered):
        raise SpecError(ordered)
    return replace(pipeline, warnings=[d for d in ordered if d.severity == "warning"])


def _read_text(shown: str, file: Path, sink: list[Diagnostic]) -> str | None:
    def fail(message: str, hint: str | None = None) -> None:
        sink.append(Diagnostic(shown, None, None, "", message, hint))

    try:
        with open(file, encoding="utf-8-sig") as f:  # -sig: drop a byte-order mark
            return f.read()
    except FileNotFoundError:
        fail(f"no such file (looked for {file})")
    except IsADirectoryError:
        fail("is a folder, not a YAML file", "give the pipeline's .yml file")
    except UnicodeDecodeError as exc:
        fail(f"not UTF-8 text (byte {exc.object[exc.start]:#04x} at offset {exc.start})")
    except OSError as exc:
        fail(f"cannot read the file: {exc.strerror or exc}")
    return None


def _type_of(r: Reporter, node: yaml.MappingNode, fld: str,
             expected: str) -> tuple[str | None, yaml.Node | None]:
    """The ``type:`` of a mapping (read first: it decides which keys are allowed)."""
    for key, value in node.value:
        if isinstance(key, yaml.ScalarNode) and key.value == "type":
            if isinstance(value, yaml.ScalarNode) and value.tag == STR:
                return str(value.value), value
            r.error(value, fld, f"expected {expected}, found {describe(value)}")
            return None, value
    return None, None


def _read_document(r: Reporter, root: yaml.MappingNode, file: Path,
                   run_dir: Path | None) -> Pipeline | None:
    kind, node = _type_of(r, root, "type", "'pipeline' or 'parallel'")
    if kind == "pipeline":
        return _read_pipeline(r, root, file, run_dir)
    if kind == "parallel":
        return _read_single_job(r, root, file, run_dir)
    if node is None:
        r.error(root, "type", "missing required field 'type'",
                "a pipeline file starts with 'type: pipeline' (or 'type: parallel' for one job)")
    elif kind in schema.PLANNED_STEP_TYPES:
        r.error(node, "type", f"a '{kind}' job file is not supported yet",
                "put the step in a pipeline's jobs:, or run a 'type: parallel' job")
    elif kind is not None:
        r.error(node, "type", f"unknown file type '{kind}'",
                did_you_mean(kind, ("pipeline", "parallel")) or "expected pipeline or parallel")
    return None


def _read_pipeline(r: Reporter, root: yaml.MappingNode, file: Path,
                   run_dir: Path | None) -> Pipeline | None:
    keys = read_mapping(r, root, "", schema.PIPELINE_KEYS, required=("jobs",))
    if keys is None:
        return None
    check_recorded(r, keys)
    top = Scope(r, file.parent)
    inputs = read_inputs(top, keys["inputs"].value, "inputs") if "inputs" in keys else {}
    outputs = read_outputs(top, keys["outputs"].value, "outputs") if "outputs" in keys else {}
    text = {k: get_str(r, keys[k].value, k, allow_empty=True) if k in keys else None
            for k in ("display_name", "description", "name", "experiment_name", "compute")}
    tags = get_str_map(r, keys["tags"].value, "tags") if "tags" in keys else {}
    default_compute = _settings(r, keys["settings"]) if "settings" in keys else None
    jobs: dict[str, Step] = {}
    if "jobs" in keys:
        entries = named_entries(r, keys["jobs"].value, "jobs")
        if entries == []:
            r.error(keys["jobs"].key, "jobs", "the pipeline has no jobs",
                    "add a step under jobs:, e.g. a 'type: parallel' step")
        for entry in entries or []:
            step = _read_step(r, entry, file, inputs, outputs, run_dir)
            if step is not None:
                jobs[step.name] = step
    return Pipeline(
        file=file, display_name=text["display_name"], description=text["description"],
        tags=tags or {}, default_compute=default_compute, inputs=inputs, outputs=outputs,
        jobs=jobs, name=text["name"], experiment_name=text["experiment_name"],
        compute=text["compute"],
    )


def _settings(r: Reporter, entry: Entry) -> str | None:
    keys = read_mapping(r, entry.value, entry.field, schema.SETTINGS_KEYS)
    if keys is None:
        return None
    for key in ("default_datastore", "default_environment"):
        if key in keys:
            get_str(r, keys[key].value, keys[key].field)
    for key in ("continue_on_step_failure", "force_rerun"):
        if key in keys:
            get_bool(r, keys[key].value, keys[key].field)
    if "default_compute" in keys:
        return get_str(r, keys["default_compute"].value, keys["default_compute"].field)
    return None


def _read_step(r: Reporter, entry: Entry, file: Path, inputs: dict[str, Input],
               outputs: dict[str, Output], run_dir: Path | None) -> Step | None:
    name, node = str(entry.key.value), entry.value
    if not _STEP_NAME.fullmatch(name):
        r.error(entry.key, entry.field, f"invalid step name '{name}'",
                "use letters, digits, '_' and '-', starting with a letter or '_'")
        return None
    if not isinstance(node, yaml.MappingNode):
        r.error(node, entry.field, f"expected a step (a mapping), found {describe(node)}")
        return None
    type_field = field_join(entry.field, "type")
    kind, type_node = _type_of(r, node, type_field, "a step type such as 'parallel'")
    if kind == "parallel":
        scope = Scope(r, file.parent, inputs, outputs, prefix=entry.field)
        return read_parallel_step(scope, name, entry.key, node, file, run_dir)
    if type_node is None:
        r.error(entry.key, type_field, "missing required field 'type'",
                "parajob runs steps of type: parallel")
    elif kind in schema.PLANNED_STEP_TYPES:
        r.error(type_node, type_field, f"steps of type '{kind}' are not supported yet")
    elif kind is not None:
        r.error(type_node, type_field, f"unknown step type '{kind}'",
                did_you_mean(kind, schema.STEP_TYPES + schema.PLANNED_STEP_TYPES)
                or "parajob runs steps of type: parallel")
    return None


def _read_single_job(r: Reporter, root: yaml.MappingNode, file: Path,
                     run_dir: Path | None) -> Pipeline | None:
    name = re.sub(r"[^A-Za-z0-9_-]", "_", file.stem)
    if not name or not (name[0].isalpha() or name[0] == "_"):
        name = f"_{name}"
    step = read_parallel_step(Scope(r, file.parent), name, None, root, file, run_dir,
                              allowed=schema.PARALLEL_JOB_KEYS)
    if step is None:
        return None
    return Pipeline(file=file, display_name=step.display_name, description=step.description,
                    tags=dict(step.tags), default_compute=step.compute, jobs={name: step})
