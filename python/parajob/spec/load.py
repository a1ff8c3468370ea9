"""``load_pipeline``: a YAML file to a validated :class:`~parajob.spec.model.Pipeline`.

Data flow::

    file text --compose--> node tree --(duplicate keys?)--> --set edits (overrides)
        --> settings, pipeline inputs/outputs --> dependency graph (graph.scan_edges)
        --> each step, producers first: component merged (component), then read_* functions
        --> dataclasses
                                 \\                          /
                                  +---- Reporter: every problem, with file, line and column

Nothing is raised while reading: each problem is recorded and reading goes on, so the
user sees every mistake at once; :class:`~parajob.errors.SpecError` is raised at the end
when there was at least one error. Warnings travel on ``Pipeline.warnings`` (and in the
SpecError when there are errors too).

Three kinds of file are accepted: a pipeline (``type: pipeline`` with ``jobs:``) and, for
convenience, a single parallel or command job (``type: parallel`` / ``type: command`` at the
top), which becomes a one-step pipeline whose step is named after the file's stem.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path

import yaml

from parajob.errors import Diagnostic, SpecError
from parajob.spec import schema
from parajob.spec.command import read_command_step
from parajob.spec.component import ComponentCache, load_component, merge_node
from parajob.spec.graph import Edge, order_steps, scan_edges
from parajob.spec.model import Input, Output, Pipeline, Step
from parajob.spec.output_places import check_output_places
from parajob.spec.overrides import apply_overrides
from parajob.spec.parallel import check_recorded, read_parallel_step
from parajob.spec.places import Places
from parajob.spec.ports import Scope, read_inputs, read_outputs
from parajob.spec.report import Reporter, did_you_mean
from parajob.spec.yaml_nodes import (
    STR,
    Entry,
    compose,
    describe,
    entries,
    field_join,
    get_bool,
    get_str,
    get_str_map,
    named_entries,
    read_mapping,
)

__all__ = ["load_pipeline"]

_STEP_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_-]*")


def load_pipeline(
    path: str | os.PathLike[str],
    *,
    run_dir: Path | None = None,
    datastores: Mapping[str, Path] | None = None,
    overrides: Sequence[str] = (),
    text: str | None = None,
) -> Pipeline:
    """Load and validate a pipeline (or single job) YAML file.

    ``run_dir``, when given, is where the run's outputs go: bindings to outputs without a
    ``path`` then resolve to ``<run_dir>/<step>/outputs/<name>``, ``${{name}}`` to the run
    folder's name, and datastores not in ``datastores`` (name -> folder) to
    ``<run_dir>/datastores/<name>``. ``overrides`` are ``--set KEY=VALUE`` texts. Reads the
    file (and the component files it names) and checks that the paths it names exist;
    imports nothing. Raises SpecError (every problem found). ``text``, when given, is the
    file's content and nothing is read: ``path`` then only names it in messages, and its
    folder is where relative paths resolve (``parajob.load`` of YAML text).
    """
    shown = os.fspath(path)
    file = Path(os.path.abspath(shown))
    sink: list[Diagnostic] = []
    if text is None:
        text = _read_text(shown, file, sink)
    if text is None:
        raise SpecError(sink)
    r = Reporter(shown, text, sink, folder=file.parent)
    root = compose(text, r)
    pipeline: Pipeline | None = None
    if root is None and not r.error_count:
        r.error(None, "", "the file is empty", "a pipeline starts with 'type: pipeline'")
    elif isinstance(root, yaml.MappingNode):
        places = Places(
            Path(os.path.abspath(run_dir)) if run_dir is not None else None,
            {k: Path(os.path.abspath(v)) for k, v in (datastores or {}).items()},
        )
        pipeline = _read_document(r, root, file, places, overrides)
        if pipeline is not None:
            check_output_places(r, pipeline, places.run_dir)  # needs every step and input
    elif root is not None:
        r.error(root, "", f"expected a mapping of fields at the top, found {describe(root)}")
    unique = list({(d.file, d.line, d.column, d.message, d.severity): d for d in sink}.values())
    ordered = sorted(unique, key=lambda d: (d.file != shown, d.file, d.line or 0, d.column or 0))
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


def _type_of(
    r: Reporter, node: yaml.MappingNode, fld: str, expected: str
) -> tuple[str | None, yaml.Node | None]:
    """The ``type:`` of a mapping (read first: it decides which keys are allowed)."""
    for key, value in entries(node):
        if isinstance(key, yaml.ScalarNode) and key.value == "type":
            if isinstance(value, yaml.ScalarNode) and value.tag == STR:
                return str(value.value), value
            r.error(value, fld, f"expected {expected}, found {describe(value)}")
            return None, value
    return None, None


def _single_name(file: Path) -> str:
    name = re.sub(r"[^A-Za-z0-9_-]", "_", file.stem)
    return name if name and (name[0].isalpha() or name[0] == "_") else f"_{name}"


def _read_document(
    r: Reporter, root: yaml.MappingNode, file: Path, places: Places, overrides: Sequence[str]
) -> Pipeline | None:
    kind, node = _type_of(r, root, "type", "'pipeline', 'parallel' or 'command'")
    single = kind in schema.STEP_TYPES
    apply_overrides(r, root, overrides, _single_name(file) if single else None)
    if kind == "pipeline":
        return _read_pipeline(r, root, file, places)
    if single:
        return _read_single_job(r, root, file, places)
    if node is None:
        r.error(
            root,
            "type",
            "missing required field 'type'",
            "a pipeline file starts with 'type: pipeline' (or 'type: parallel' for one job)",
        )
    elif kind in schema.UNRUNNABLE_STEP_TYPES:
        r.error(
            node,
            "type",
            f"a '{kind}' job cannot run locally",
            "parajob runs pipelines of parallel and command steps",
        )
    elif kind is not None:
        r.error(
            node,
            "type",
            f"unknown file type '{kind}'",
            did_you_mean(kind, ("pipeline", *schema.STEP_TYPES))
            or "expected pipeline, parallel or command",
        )
    return None


def _read_pipeline(
    r: Reporter, root: yaml.MappingNode, file: Path, places: Places
) -> Pipeline | None:
    keys = read_mapping(r, root, "", schema.PIPELINE_KEYS, required=("jobs",))
    if keys is None:
        return None
    check_recorded(r, keys)
    settings = _settings(r, keys["settings"]) if "settings" in keys else {}
    datastore = str(settings.get("default_datastore") or "workspaceblobstore")
    places = replace(places, default_datastore=re.sub(r"^azureml:", "", datastore))
    top = Scope(r, file.parent, places=places)
    inputs = read_inputs(top, keys["inputs"].value, "inputs") if "inputs" in keys else {}
    outputs = read_outputs(top, keys["outputs"].value, "outputs") if "outputs" in keys else {}
    text = {
        k: get_str(r, keys[k].value, k, allow_empty=True) if k in keys else None
        for k in ("display_name", "description", "name", "experiment_name", "compute")
    }
    tags = get_str_map(r, keys["tags"].value, "tags") if "tags" in keys else {}
    jobs: dict[str, Step] = {}
    order: list[str] = []
    if "jobs" in keys:
        entries_ = named_entries(r, keys["jobs"].value, "jobs")
        if entries_ == []:
            r.error(
                keys["jobs"].key,
                "jobs",
                "the pipeline has no jobs",
                "add a step under jobs:, e.g. a 'type: parallel' step",
            )
        steps = [e for e in entries_ or [] if _step_shape(r, e)]
        edges = scan_edges(r, steps)
        order, _ = order_steps(r, edges)
        by_name = {str(e.key.value): e for e in steps}
        ctx = _StepContext(file, inputs, outputs, places, frozenset(by_name))
        for name in order:
            step = ctx.read(r, by_name[name])
            if step is not None:
                jobs[name] = replace(step, depends_on=_producers(edges[name], order))
        jobs = {n: jobs[n] for n in by_name if n in jobs}  # YAML order
    return Pipeline(
        file=file,
        display_name=text["display_name"],
        description=text["description"],
        tags=tags or {},
        default_compute=_text(settings.get("default_compute")),
        inputs=inputs,
        outputs=outputs,
        jobs=jobs,
        name=text["name"],
        experiment_name=text["experiment_name"],
        compute=text["compute"],
        order=tuple(order),
        default_datastore=places.default_datastore,
        continue_on_step_failure=bool(settings.get("continue_on_step_failure")),
    )


def _text(value: object) -> str | None:
    return None if value is None else str(value)


def _producers(edges: list[Edge], order: list[str]) -> tuple[str, ...]:
    return tuple(sorted({e.producer for e in edges}, key=order.index))


def _settings(r: Reporter, entry: Entry) -> dict[str, object]:
    keys = read_mapping(r, entry.value, entry.field, schema.SETTINGS_KEYS)
    if keys is None:
        return {}
    out: dict[str, object] = {}
    for key in ("default_datastore", "default_environment", "default_compute"):
        if key in keys:
            out[key] = get_str(r, keys[key].value, keys[key].field)
    for key in ("continue_on_step_failure", "force_rerun"):
        if key in keys:
            out[key] = get_bool(r, keys[key].value, keys[key].field)
    return out


def _step_shape(r: Reporter, entry: Entry) -> bool:
    """A step's name is valid and it is a mapping (else it is not read at all)."""
    name, node = str(entry.key.value), entry.value
    if not _STEP_NAME.fullmatch(name):
        r.error(
            entry.key,
            entry.field,
            f"invalid step name '{name}'",
            "use letters, digits, '_' and '-', starting with a letter or '_'",
        )
        return False
    if not isinstance(node, yaml.MappingNode):
        r.error(node, entry.field, f"expected a step (a mapping), found {describe(node)}")
        return False
    return True


class _StepContext:
    """What reading a step needs from the pipeline; steps read so far add their outputs."""

    def __init__(
        self,
        file: Path,
        inputs: dict[str, Input] | None,
        outputs: dict[str, Output] | None,
        places: Places,
        steps: frozenset[str],
    ) -> None:
        self.file, self.inputs, self.outputs = file, inputs, outputs
        self.places, self.steps = places, steps
        self.producers: dict[str, dict[str, Output]] = {}
        self.components = ComponentCache()

    def read(self, r: Reporter, entry: Entry, single: bool = False) -> Step | None:
        name, node = str(entry.key.value), entry.value
        assert isinstance(node, yaml.MappingNode)
        prefix = "" if single else entry.field
        type_field = field_join(prefix, "type")
        kind, type_node = _type_of(r, node, type_field, "a step type such as 'parallel'")
        comp_entry = next(
            (
                Entry(k, v, field_join(prefix, "component"))
                for k, v in entries(node)
                if getattr(k, "value", None) == "component"
            ),
            None,
        )
        scope = Scope(
            r,
            self.file.parent,
            self.inputs,
            self.outputs,
            prefix=prefix,
            step=name,
            places=self.places,
            producers=self.producers,
            steps=self.steps,
        )
        merged, component = node, None
        if comp_entry is not None:
            known = kind if kind in schema.STEP_TYPES else None
            component = load_component(
                r, comp_entry, scope.folder(comp_entry.value), known, self.components
            )
            if component is None:
                return None
            kind = kind or component.kind
            merged = merge_node(node, component)
            scope.in_ports, scope.out_ports = component.in_ports, component.out_ports
            scope.component = component.shown
        key = None if single else entry.key
        step: Step | None = None
        if kind == "parallel":
            allowed = schema.PARALLEL_JOB_KEYS if single else schema.PARALLEL_STEP_KEYS
            step = read_parallel_step(scope, name, key, merged, self.file, allowed)
        elif kind == "command":
            allowed = schema.COMMAND_JOB_KEYS if single else schema.COMMAND_STEP_KEYS
            if component is not None:
                allowed = allowed | {"additional_includes"}
            step = read_command_step(scope, name, key, merged, self.file, allowed)
        elif type_node is None and kind is None:
            r.error(
                entry.key,
                type_field,
                "missing required field 'type'",
                "parajob runs steps of type: parallel and type: command",
            )
        elif kind in schema.UNRUNNABLE_STEP_TYPES:
            r.error(
                type_node,
                type_field,
                f"steps of type '{kind}' cannot run locally",
                "parajob runs steps of type: parallel and type: command",
            )
        elif kind is not None:
            r.error(
                type_node,
                type_field,
                f"unknown step type '{kind}'",
                did_you_mean(kind, schema.STEP_TYPES + schema.UNRUNNABLE_STEP_TYPES)
                or "parajob runs steps of type: parallel and type: command",
            )
        if step is not None and component is not None:
            step = replace(step, component=component.file)
        return step


def _read_single_job(
    r: Reporter, root: yaml.MappingNode, file: Path, places: Places
) -> Pipeline | None:
    name = _single_name(file)
    key = yaml.ScalarNode("tag:yaml.org,2002:str", name, root.start_mark, root.end_mark)
    ctx = _StepContext(file, None, None, places, frozenset({name}))
    step = ctx.read(r, Entry(key, root, ""), single=True)
    if step is None:
        return None
    return Pipeline(
        file=file,
        display_name=step.display_name,
        description=step.description,
        tags=dict(step.tags),
        default_compute=step.compute,
        jobs={name: step},
        order=(name,),
        single_job=True,
    )
