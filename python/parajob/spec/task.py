"""A parallel step's ``task:`` block: the entry script and its program arguments.

The entry script is checked to exist, never imported (the runtime imports it in each
worker, and ``parajob validate`` in a short-lived subprocess). ``program_arguments`` is bound
(:mod:`parajob.spec.commandline`) and shell-split into ``argv``; the runtime flags in it
are read into :class:`~parajob.spec.arguments.RuntimeArgs` with positioned warnings for
near-miss flags.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path, PurePath
from typing import Any

import yaml

from parajob.spec import schema
from parajob.spec.arguments import RuntimeArgs, read_runtime_args
from parajob.spec.bindings import whole_ref
from parajob.spec.commandline import bind_command_text
from parajob.spec.model import Input, Output, Task
from parajob.spec.ports import Scope, local_path
from parajob.spec.report import closest, did_you_mean
from parajob.spec.yaml_nodes import STR, Entry, describe, get_str, read_mapping, to_python

__all__ = ["read_task", "read_code", "read_environment"]


def read_task(
    s: Scope, entry: Entry, inputs: Mapping[str, Input], outputs: Mapping[str, Output]
) -> tuple[Task | None, RuntimeArgs]:
    """Read ``task:``; returns (None, defaults) after recording errors."""
    keys = read_mapping(
        s.r,
        entry.value,
        entry.field,
        schema.TASK_KEYS,
        anchor=entry.key,
        required=("type", "code", "entry_script"),
        misplaced=schema.MISPLACED_IN_TASK,
    )
    if keys is None:
        return None, RuntimeArgs()
    for k, e in keys.items():
        s.note(e.field, e.value)
        if k in schema.UNSUPPORTED:
            s.r.error(e.key, e.field, schema.UNSUPPORTED[k])
    kind = _task_type(s, keys.get("type"))
    code = read_code(s, keys.get("code"))
    script = _entry_script(s, keys.get("entry_script"), code)
    environment, conda_file = (
        read_environment(s, keys["environment"]) if "environment" in keys else (None, None)
    )
    text, argv, args = "", list[str](), RuntimeArgs()
    if "program_arguments" in keys:
        text, argv, args = _arguments(s, keys["program_arguments"], inputs, outputs)
    append_to = (
        _append_row_to(s, keys["append_row_to"], outputs) if "append_row_to" in keys else None
    )
    if kind is None or code is None or script is None:
        return None, args
    return Task(
        type=kind,
        code=code,
        entry_script=script,
        program_arguments=text,
        argv=tuple(argv),
        append_row_to=append_to,
        environment=environment,
        conda_file=conda_file,
    ), args


def _task_type(s: Scope, entry: Entry | None) -> str | None:
    if entry is None:
        return None
    text = get_str(s.r, entry.value, entry.field)
    if text is not None and text not in schema.TASK_TYPES:
        s.r.error(
            entry.value,
            entry.field,
            f"unknown task type '{text}'",
            did_you_mean(text, schema.TASK_TYPES) or "parajob runs task.type: run_function",
        )
        return None
    return text


def read_code(s: Scope, entry: Entry | None) -> Path | None:
    if entry is None:
        return None
    text = get_str(s.r, entry.value, entry.field)
    path = local_path(s, entry.value, entry.field, text) if text else None
    if path is None:
        return None
    if not path.is_dir():
        found = "is a file" if path.exists() else "does not exist"
        s.r.error(
            entry.value,
            entry.field,
            f"code folder '{text}' {found} (looked for {path})",
            "task.code is the folder that holds the entry script, relative to this file",
        )
        return None
    return path


def _entry_script(s: Scope, entry: Entry | None, code: Path | None) -> str | None:
    if entry is None:
        return None
    text = get_str(s.r, entry.value, entry.field)
    if text is None:
        return None
    pure = PurePath(text)
    if pure.is_absolute() or ".." in pure.parts:
        s.r.error(
            entry.value,
            entry.field,
            f"entry_script '{text}' must be a path inside task.code",
            "write it relative to the code folder, e.g. score.py",
        )
        return None
    if pure.suffix != ".py":
        s.r.error(
            entry.value,
            entry.field,
            f"entry_script '{text}' is not a .py file",
            "the runtime imports the entry script as a Python module",
        )
        return None
    if code is not None and not (code / pure).is_file():
        names = sorted(p.name for p in code.glob("*.py"))
        s.r.error(
            entry.value,
            entry.field,
            f"entry script '{text}' not found in {code}",
            did_you_mean(pure.name, names)
            or (f"Python files there: {', '.join(names[:8])}" if names else None),
        )
        return None
    return text


def read_environment(s: Scope, entry: Entry) -> tuple[dict[str, Any] | str | None, Path | None]:
    """Recorded only: the run uses the current Python (docs/contract.md §1.3). Returns the
    environment as written and its ``conda_file`` made absolute (checked later, as a warning)."""
    node = entry.value
    if isinstance(node, yaml.ScalarNode):
        return get_str(s.r, node, entry.field), None
    keys = read_mapping(s.r, node, entry.field, schema.ENVIRONMENT_KEYS)
    if keys is None:
        return None, None
    conda_file = None
    if "conda_file" in keys:
        conda = keys["conda_file"]
        if isinstance(conda.value, yaml.ScalarNode):
            text = get_str(s.r, conda.value, conda.field)
            conda_file = local_path(s, conda.value, conda.field, text) if text else None
            s.note(conda.field, conda.value)
        elif not isinstance(conda.value, yaml.MappingNode):  # an inline conda spec is fine
            s.r.error(
                conda.value,
                conda.field,
                f"expected a file name or a conda specification, found {describe(conda.value)}",
            )
    value = to_python(node)
    return (dict(value) if isinstance(value, dict) else None), conda_file


def _arguments(
    s: Scope, entry: Entry, inputs: Mapping[str, Input], outputs: Mapping[str, Output]
) -> tuple[str, list[str], RuntimeArgs]:
    node = entry.value
    if not (isinstance(node, yaml.ScalarNode) and node.tag == STR):
        s.r.error(
            node,
            entry.field,
            f"expected one string of arguments, found {describe(node)}",
            "write them on one line, or use a folded block: program_arguments: >-",
        )
        return "", [], RuntimeArgs()
    bound = bind_command_text(
        s, node, entry.field, inputs, outputs, what="program_arguments", split=True
    )
    if bound is None:
        return str(node.value), [], RuntimeArgs()
    text, argv = bound
    args, problems = read_runtime_args(argv)
    for p in problems:
        nth = sum(1 for t in argv[: p.index] if t.partition("=")[0] == p.token)
        s.r.add(s.r.find(node, p.token, nth), entry.field, p.message, p.hint, p.severity)
    return text, argv, args


def _append_row_to(s: Scope, entry: Entry, outputs: Mapping[str, Output]) -> str | None:
    text = get_str(s.r, entry.value, entry.field)
    if text is None:
        return None
    ref = whole_ref(text)
    if ref is not None and ref.scope == "outputs" and ref.name in outputs:
        return ref.name
    if ref is None or ref.scope not in ("inputs", "outputs"):
        s.r.error(
            entry.value,
            entry.field,
            f"expected ${{{{outputs.<name>}}}}, found '{text}'",
            f"write ${{{{outputs.{text}}}}}" if text in outputs else None,
        )
        return None
    if ref.scope == "inputs":
        close = closest(ref.name, outputs) or (next(iter(outputs)) if len(outputs) == 1 else None)
        hint = (
            f"did you mean ${{{{outputs.{close}}}}}?"
            if close
            else f"this step's outputs: {', '.join(outputs)}"
            if outputs
            else f"add an output, e.g. outputs: {{{ref.name}: {{type: uri_file}}}}, and write "
            f"${{{{outputs.{ref.name}}}}}"
        )
        s.r.error(
            entry.value,
            entry.field,
            f"append_row_to must name an output, but {ref.text} is an input",
            hint,
        )
        return None
    s.r.error(
        entry.value,
        entry.field,
        f"{ref.text} names no output '{ref.name}' of this step",
        did_you_mean(ref.name, outputs) or "declare it under the step's outputs:",
    )
    return None
