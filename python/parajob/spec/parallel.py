"""Building one ``type: parallel`` step (docs/contract.md §2.1) from its YAML mapping.

Every field is checked and every problem recorded before giving up, so one run shows all
the mistakes in a step. Settings may be written as ``${{parent.inputs.x}}`` where ``x`` is
a literal pipeline input (as on the service); the pipeline value is then checked as if it
had been written in place.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path

import yaml

from parajob.spec import schema
from parajob.spec.arguments import RuntimeArgs
from parajob.spec.bindings import whole_ref
from parajob.spec.model import Input, ParallelStep, RetrySettings
from parajob.spec.ports import Scope, read_step_ports
from parajob.spec.report import Reporter, did_you_mean
from parajob.spec.sizes import MiniBatchSize, parse_mini_batch_size
from parajob.spec.task import read_task
from parajob.spec.yaml_nodes import (
    BOOL,
    FLOAT,
    INT,
    STR,
    Entry,
    describe,
    get_bool,
    get_int,
    get_str,
    get_str_list,
    get_str_map,
    is_null,
    read_mapping,
    to_python,
)

__all__ = ["read_parallel_step", "check_recorded", "warn_machine_only_resources"]

_LITERAL_TAG = {"integer": INT, "number": FLOAT, "boolean": BOOL, "string": STR}


@dataclass
class _Step:
    """The reading state of one step: its scope and its keys."""

    s: Scope
    keys: dict[str, Entry]
    _values: dict[str, yaml.Node | None] = field(default_factory=dict)

    def value(self, key: str) -> yaml.Node | None:
        """The value node of ``key``, with a ``${{parent.inputs.x}}`` literal put in place;
        None when the key is absent, null, or its binding is wrong (an error is recorded
        once: the result is remembered)."""
        if key not in self._values:
            self._values[key] = self._resolve(key)
        return self._values[key]

    def _resolve(self, key: str) -> yaml.Node | None:
        entry = self.keys.get(key)
        if entry is None or is_null(entry.value):
            return None
        node = entry.value
        ref = (
            whole_ref(str(node.value))
            if isinstance(node, yaml.ScalarNode) and node.tag == STR
            else None
        )
        if ref is None or ref.scope != "parent.inputs":
            return node
        parents = self.s.parent_inputs
        port = parents.get(ref.name) if parents is not None else None
        if parents is None:
            self.s.r.error(node, entry.field, f"{ref.text} cannot be used outside a pipeline")
            return None
        if port is None:
            self.s.r.error(
                node,
                entry.field,
                f"{ref.text} names no pipeline input '{ref.name}'",
                did_you_mean(ref.name, parents),
            )
            return None
        if not port.is_literal or port.value is None:
            self.s.r.error(
                node,
                entry.field,
                f"{ref.text} is {port.type} data, not a literal",
                "settings may bind pipeline inputs such as 'batch: 10'",
            )
            return None
        return yaml.ScalarNode(_LITERAL_TAG[port.type], port.value, node.start_mark, node.end_mark)

    def path(self, key: str) -> str:
        """The dotted path of ``key`` (present in ``keys``)."""
        return self.keys[key].field


def read_parallel_step(
    s: Scope,
    name: str,
    key: yaml.Node | None,
    node: yaml.Node,
    file: Path,
    allowed: frozenset[str] = schema.PARALLEL_STEP_KEYS,
) -> ParallelStep | None:
    """Read one parallel step (``node`` already merged with its component, whose ports are
    in ``s``); None when any error was recorded for it. Its outputs go to ``s.producers``
    even then, so that steps reading them are checked against what it declares."""
    errors_before = s.r.error_count
    keys = read_mapping(
        s.r,
        node,
        s.prefix,
        allowed,
        required=("input_data", "task"),
        misplaced=schema.MISPLACED_IN_STEP,
        anchor=key,
    )
    if keys is None:
        return None
    st = _Step(s, keys)
    for k, e in keys.items():
        s.note(e.field, e.value)
        if k in schema.UNSUPPORTED:
            s.r.error(e.key, e.field, schema.UNSUPPORTED[k])
    check_recorded(s.r, keys)
    text = {k: _opt_str(st, k) for k in ("display_name", "description", "compute")}
    tags, inputs, outputs = read_step_ports(s, keys, name, key)
    input_data = _input_data(st, inputs)
    size = _mini_batch_size(st)
    partition_keys = _partition_keys(st)
    instance_count = _resources(st)
    concurrency = _int(st, "max_concurrency_per_instance", low=1)
    batch_threshold = _int(st, "mini_batch_error_threshold", low=-1)
    item_threshold = _int(st, "error_threshold", low=-1)
    retry = _retry(st)
    level = _logging_level(st)
    env = (
        get_str_map(s.r, keys["environment_variables"].value, st.path("environment_variables"))
        if "environment_variables" in keys
        else {}
    )
    task, args = (
        read_task(s, keys["task"], inputs, outputs) if "task" in keys else (None, RuntimeArgs())
    )
    _cross_checks(st, inputs.get(input_data or ""), size, partition_keys, args)
    if s.r.error_count > errors_before or task is None or input_data is None:
        return None
    # docs/contract.md §2.3: a program argument wins over the YAML field.
    if args.mini_batch_size is not None:
        size = parse_mini_batch_size(args.mini_batch_size)
    if args.run_invocation_timeout is not None:
        retry = replace(retry, timeout=args.run_invocation_timeout)
    return ParallelStep(
        name=name,
        file=file,
        line=(key or node).start_mark.line + 1,
        inputs=inputs,
        outputs=outputs,
        input_data=input_data,
        mini_batch_size=size,
        partition_keys=partition_keys,
        instance_count=instance_count or 1,
        max_concurrency_per_instance=args.process_count_per_node or concurrency,
        mini_batch_error_threshold=_first(args.allowed_failed_count, batch_threshold, -1),
        error_threshold=_first(args.error_threshold, item_threshold, -1),
        retry_settings=retry,
        logging_level=args.logging_level or level or "INFO",
        environment_variables=env or {},
        task=task,
        compute=text["compute"],
        display_name=text["display_name"],
        description=text["description"],
        tags=tags,
        runtime_args=args,
        locations=dict(s.locations),
        location_files=dict(s.location_files),
    )


def _first(*values: int | None) -> int:
    return next(v for v in values if v is not None)


def _opt_str(st: _Step, key: str) -> str | None:
    node = st.value(key)
    return None if node is None else get_str(st.s.r, node, st.path(key), allow_empty=True)


def check_recorded(r: Reporter, keys: dict[str, Entry]) -> None:
    """Fields kept for compatibility and not used locally: type-checked, then dropped."""
    for key in ("name", "experiment_name", "$schema"):
        if key in keys:
            get_str(r, keys[key].value, keys[key].field)
    if "is_deterministic" in keys:
        get_bool(r, keys["is_deterministic"].value, keys["is_deterministic"].field)
    if "properties" in keys:
        get_str_map(r, keys["properties"].value, keys["properties"].field)
    if "identity" in keys:
        if (
            read_mapping(
                r,
                keys["identity"].value,
                keys["identity"].field,
                ("type", "client_id", "object_id", "msi_resource_id"),
                required=("type",),
            )
            is not None
        ):
            r.warning(
                keys["identity"].value,
                keys["identity"].field,
                "identity has no effect here: parajob reads and writes local paths "
                "with the permissions of the user who runs it",
            )


# resources.<key> of the Azure schema that describe the cloud machine, not the work.
MACHINE_ONLY_RESOURCES = (
    "instance_type",
    "shm_size",
    "docker_args",
    "max_instance_count",
    "locations",
    "properties",
)


def warn_machine_only_resources(r: Reporter, keys: dict[str, Entry]) -> None:
    """A warning per resources.<key> that only a cloud machine could honour (said, not
    silently ignored: a user who asked for a GPU VM should learn it has no effect)."""
    for key in MACHINE_ONLY_RESOURCES:
        if key in keys:
            r.warning(
                keys[key].value,
                keys[key].field,
                f"resources.{key} has no effect here: parajob runs on this machine as "
                "it is (no VM, container or image is chosen)",
            )


def _int(
    st: _Step, key: str, *, low: int | None = None, high: int | None = None, low_open: bool = False
) -> int | None:
    node = st.value(key)
    if node is None:
        return None
    return get_int(st.s.r, node, st.path(key), low=low, high=high, low_open=low_open)


def _input_data(st: _Step, inputs: dict[str, Input]) -> str | None:
    node = st.value("input_data")
    if node is None:
        return None
    fld = st.path("input_data")
    text = get_str(st.s.r, node, fld)
    if text is None:
        return None
    ref = whole_ref(text)
    if ref is None or ref.scope != "inputs":
        named = ref.name if ref is not None and ref.scope == "parent.inputs" else text
        hint = (
            f"write ${{{{inputs.{named}}}}}"
            if named in inputs
            else "declare the data under the step's inputs: and bind it with ${{inputs.<name>}}"
        )
        st.s.r.error(node, fld, f"expected ${{{{inputs.<name>}}}}, found '{text}'", hint)
        return None
    if ref.name not in inputs:
        hint = did_you_mean(ref.name, inputs) or (
            f"this step's inputs: {', '.join(inputs)}" if inputs else "the step declares no inputs"
        )
        st.s.r.error(node, fld, f"{ref.text} names no input '{ref.name}' of this step", hint)
        return None
    port = inputs[ref.name]
    if port.is_literal:
        st.s.r.error(
            node,
            fld,
            f"input_data must be data (uri_folder, uri_file or mltable), "
            f"but input '{ref.name}' is {'an' if port.type[0] in 'aeio' else 'a'} "
            f"{port.type} literal",
        )
        return None
    return ref.name


def _mini_batch_size(st: _Step) -> MiniBatchSize | None:
    node = st.value("mini_batch_size")
    if node is None:
        return None
    fld = st.path("mini_batch_size")
    if not (isinstance(node, yaml.ScalarNode) and node.tag in (INT, STR)):
        st.s.r.error(
            node, fld, f"expected a number of files or a size like '10kb', found {describe(node)}"
        )
        return None
    try:
        return parse_mini_batch_size(to_python(node) if node.tag == INT else str(node.value))
    except ValueError as exc:
        text = str(node.value)
        hint = f"write '{text.replace(' ', '')}'" if " " in text.strip() else None
        if text.lower().endswith("b") and not text[-2:-1].isalpha():
            hint = "units are kb, mb or gb (1024-based); a bare number is a count"
        st.s.r.error(node, fld, str(exc), hint)
        return None


def _partition_keys(st: _Step) -> tuple[str, ...] | None:
    node = st.value("partition_keys")
    if node is None:
        return None
    values = get_str_list(st.s.r, node, st.path("partition_keys"))
    if values is None:
        return None
    if not values:
        st.s.r.error(node, st.path("partition_keys"), "expected at least one key, found []")
        return None
    repeated = sorted({v for v in values if values.count(v) > 1})
    if repeated:
        st.s.r.error(node, st.path("partition_keys"), f"keys given twice: {', '.join(repeated)}")
    return tuple(values)


def _resources(st: _Step) -> int | None:
    node = st.value("resources")
    if node is None:
        return None
    keys = read_mapping(st.s.r, node, st.path("resources"), schema.RESOURCES_KEYS)
    if keys is None:
        return None
    sub = _Step(st.s, keys)
    for key in ("instance_type", "shm_size", "docker_args"):
        if key in keys:
            get_str(st.s.r, keys[key].value, keys[key].field)
    if "locations" in keys:
        get_str_list(st.s.r, keys["locations"].value, keys["locations"].field)
    if "properties" in keys:
        to_python(keys["properties"].value)
    _int(sub, "max_instance_count", low=1)
    warn_machine_only_resources(st.s.r, keys)
    for e in keys.values():
        st.s.note(e.field, e.value)
    return _int(sub, "instance_count", low=1)


def _retry(st: _Step) -> RetrySettings:
    node = st.value("retry_settings")
    if node is None:
        return RetrySettings()
    keys = read_mapping(st.s.r, node, st.path("retry_settings"), schema.RETRY_KEYS)
    if keys is None:
        return RetrySettings()
    sub = _Step(st.s, keys)
    for e in keys.values():
        st.s.note(e.field, e.value)
    retries = _int(sub, "max_retries", low=0)
    timeout = _int(sub, "timeout", low=0, high=schema.MAX_TIMEOUT, low_open=True)
    default = RetrySettings()
    return RetrySettings(
        default.max_retries if retries is None else retries,
        default.timeout if timeout is None else timeout,
    )


def _logging_level(st: _Step) -> str | None:
    node = st.value("logging_level")
    if node is None:
        return None
    text = get_str(st.s.r, node, st.path("logging_level"))
    if text is None:
        return None
    if text.upper() not in schema.LOGGING_LEVELS:
        st.s.r.error(
            node,
            st.path("logging_level"),
            f"unknown logging level '{text}'",
            did_you_mean(text.upper(), schema.LOGGING_LEVELS) or "expected DEBUG, INFO or WARNING",
        )
        return None
    return text.upper()


def _cross_checks(
    st: _Step,
    data: Input | None,
    size: MiniBatchSize | None,
    partition_keys: tuple[str, ...] | None,
    args: RuntimeArgs,
) -> None:
    """Warnings for settings that are valid alone but surprising together."""
    r, keys = st.s.r, st.keys
    if size is not None and partition_keys:
        r.warning(
            keys["mini_batch_size"].value,
            st.path("mini_batch_size"),
            "mini_batch_size is ignored when partition_keys is set: one mini-batch per key "
            "combination",
        )
    if (
        size is not None
        and size.bytes is not None
        and data is not None
        and data.type in ("uri_folder", "uri_file")
    ):
        r.warning(
            keys["mini_batch_size"].value,
            st.path("mini_batch_size"),
            f"'{size.raw}' has a size unit, but input '{data.name}' is a list of files: "
            f"it means {size.bytes} files per mini-batch (as on Azure)",
            "give a plain number of files, e.g. mini_batch_size: 10",
        )
    pairs = [
        ("error_threshold", "error_threshold", args.error_threshold),
        ("mini_batch_error_threshold", "allowed_failed_count", args.allowed_failed_count),
        ("logging_level", "logging_level", args.logging_level),
        ("max_concurrency_per_instance", "process_count_per_node", args.process_count_per_node),
        ("mini_batch_size", "mini_batch_size", args.mini_batch_size),
    ]
    retry = st.value("retry_settings")
    if isinstance(retry, yaml.MappingNode) and args.run_invocation_timeout is not None:
        for k, v in retry.value:
            if (
                getattr(k, "value", None) == "timeout"
                and isinstance(v, yaml.ScalarNode)
                and str(v.value) != str(args.run_invocation_timeout)
            ):
                r.warning(
                    v,
                    st.path("retry_settings") + ".timeout",
                    f"retry_settings.timeout: {v.value} disagrees with the program "
                    f"argument --run_invocation_timeout {args.run_invocation_timeout}",
                    "on Azure the program argument comes last on the runtime's command "
                    "line and wins; keep only one of them",
                )
    for key, flag, given in pairs:
        node = st.value(key) if key in keys else None
        if given is None or not isinstance(node, yaml.ScalarNode):
            continue
        written = str(node.value).upper() if key == "logging_level" else str(node.value)
        if written != str(given):
            r.warning(
                node,
                st.path(key),
                f"{key}: {node.value} disagrees with the program argument --{flag} {given}",
                "on Azure the program argument comes last on the runtime's command line "
                "and wins; keep only one of them",
            )
