"""Building one ``type: command`` step from its YAML mapping (docs/contract.md §1.1).

A command step runs ``command`` with a shell once, in a copy of ``code``. It is here because
real pipelines prepare data in a command step before the parallel step (the public mnist
and oj-sales examples). What only a cluster can do (``distribution``, several instances,
``services``) is recorded and, where it changes what runs, warned about.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

import yaml

from parajob.spec import schema
from parajob.spec.commandline import bind_command_text
from parajob.spec.model import CommandStep, Input, Output
from parajob.spec.parallel import check_recorded, warn_machine_only_resources
from parajob.spec.ports import Scope, read_step_ports
from parajob.spec.task import read_code, read_environment
from parajob.spec.yaml_nodes import (
    STR,
    Entry,
    describe,
    field_join,
    get_int,
    get_str,
    get_str_list,
    get_str_map,
    read_mapping,
    to_python,
)

__all__ = ["read_command_step"]


def read_command_step(
    s: Scope,
    name: str,
    key: yaml.Node | None,
    node: yaml.Node,
    file: Path,
    allowed: frozenset[str] = schema.COMMAND_STEP_KEYS,
) -> CommandStep | None:
    """Read one command step (merged with its component); None when any error was recorded.
    Its outputs go to ``s.producers`` even then (see read_parallel_step)."""
    errors_before = s.r.error_count
    keys = read_mapping(
        s.r,
        node,
        s.prefix,
        allowed,
        required=("command",),
        anchor=key,
        misplaced=schema.MISPLACED_IN_COMMAND,
    )
    if keys is None:
        return None
    for e in keys.values():
        s.note(e.field, e.value)
    check_recorded(s.r, keys)
    text = {
        k: get_str(s.r, keys[k].value, keys[k].field, allow_empty=True) if k in keys else None
        for k in ("display_name", "description", "compute")
    }
    tags, inputs, outputs = read_step_ports(s, keys, name, key)
    code = read_code(s, keys.get("code"))
    environment, conda_file = (
        read_environment(s, keys["environment"]) if "environment" in keys else (None, None)
    )
    env = (
        get_str_map(s.r, keys["environment_variables"].value, keys["environment_variables"].field)
        if "environment_variables" in keys
        else {}
    )
    timeout = _limits(s, keys["limits"]) if "limits" in keys else None
    _recorded(s, keys)
    includes = _includes(s, keys["additional_includes"]) if "additional_includes" in keys else ()
    command = None
    if "command" in keys:
        command = _command(s, keys["command"], inputs, outputs)
    if s.r.error_count > errors_before or command is None:
        return None
    return CommandStep(
        name=name,
        file=file,
        line=(key or node).start_mark.line + 1,
        inputs=inputs,
        outputs=outputs,
        command=command,
        code=code,
        environment_variables=env or {},
        environment=environment,
        conda_file=conda_file,
        timeout=timeout,
        compute=text["compute"],
        display_name=text["display_name"],
        description=text["description"],
        tags=tags,
        additional_includes=includes,
        locations=dict(s.locations),
        location_files=dict(s.location_files),
    )


def _command(
    s: Scope, entry: Entry, inputs: Mapping[str, Input], outputs: Mapping[str, Output]
) -> str | None:
    node = entry.value
    if not (isinstance(node, yaml.ScalarNode) and node.tag == STR):
        s.r.error(
            node,
            entry.field,
            f"expected the command as one string, found {describe(node)}",
            "use a folded block for a long one: command: >-",
        )
        return None
    if not str(node.value).strip():
        s.r.error(node, entry.field, "the command is empty")
        return None
    bound = bind_command_text(s, node, entry.field, inputs, outputs, what="command", split=False)
    return None if bound is None else bound[0]


def _limits(s: Scope, entry: Entry) -> int | None:
    keys = read_mapping(s.r, entry.value, entry.field, schema.LIMITS_KEYS)
    if keys is None or "timeout" not in keys:
        return None
    return get_int(s.r, keys["timeout"].value, keys["timeout"].field, low=0, low_open=True)


def _recorded(s: Scope, keys: dict[str, Entry]) -> None:
    """Fields that need a cluster: type-checked; warned about when they change what runs."""
    if "resources" in keys:
        res = read_mapping(
            s.r, keys["resources"].value, keys["resources"].field, schema.RESOURCES_KEYS
        )
        if res:
            warn_machine_only_resources(s.r, res)
        count = res.get("instance_count") if res else None
        if count is not None:
            value = get_int(s.r, count.value, count.field, low=1)
            if value is not None and value > 1:
                s.r.warning(
                    count.value,
                    count.field,
                    f"instance_count: {value}: a command step "
                    "runs once here (on Azure it runs on every node)",
                )
    if "distribution" in keys:
        value = to_python(keys["distribution"].value)
        if not isinstance(value, dict) or "type" not in value:
            s.r.error(
                keys["distribution"].value,
                keys["distribution"].field,
                f"expected a mapping with a 'type' (mpi, pytorch, tensorflow, ray), found "
                f"{describe(keys['distribution'].value)}",
            )
        else:
            s.r.warning(
                keys["distribution"].value,
                keys["distribution"].field,
                f"distribution ({value['type']}) is recorded, not set up: the command "
                "runs as one process",
            )
    for name in ("services", "queue_settings"):
        if name in keys:
            to_python(keys[name].value)
            s.r.warning(
                keys[name].value,
                keys[name].field,
                f"{name} has no effect here: the command runs once, on this machine",
            )


def _includes(s: Scope, entry: Entry) -> tuple[Path, ...]:
    """``additional_includes`` of a command component: copied next to ``code``."""
    names = get_str_list(s.r, entry.value, entry.field) or []
    out: list[Path] = []
    for i, text in enumerate(names):
        item = entry.value.value[i]
        path = Path(os.path.normpath(s.folder(item) / text))
        if not path.exists():
            s.r.error(
                item,
                field_join(entry.field, i),
                f"additional include '{text}' does not exist (looked for {path})",
            )
        else:
            out.append(path)
    return tuple(out)
