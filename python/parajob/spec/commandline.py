"""Binding a step's command text: ``task.program_arguments`` and a command step's
``command``.

    text --$[[...]] blocks resolved--> text --${{inputs.x}} / ${{outputs.y}} put in--> bound

A block vanishes when an optional input it uses was not given (the other bindings in it do
not matter). A binding outside any block to an input that was not given is an error. Inputs
become their local path (the copy, for ``download``) or the literal's text; outputs their
path, ``<run>/<step>/outputs/<name>`` by default; without a run folder a binding whose path
is not known yet stays as written. ``parent.*`` bindings are not allowed here, as on Azure:
a step reads pipeline ports through its own inputs and outputs.

``program_arguments`` is then split like a shell into argv (paths stay one argument); a
``command`` is kept as one string for the shell, with paths quoted where needed.
"""

from __future__ import annotations

import shlex
from collections.abc import Mapping

import yaml

from parajob.spec.bindings import (
    BlockError,
    Ref,
    bind_arguments,
    default_output_path,
    expand_optional,
    substitute,
    unterminated,
)
from parajob.spec.model import Input, Output
from parajob.spec.ports import Scope
from parajob.spec.report import did_you_mean

__all__ = ["bind_command_text"]


def bind_command_text(
    s: Scope,
    node: yaml.ScalarNode,
    fld: str,
    inputs: Mapping[str, Input],
    outputs: Mapping[str, Output],
    *,
    what: str,
    split: bool,
) -> tuple[str, list[str]] | None:
    """(bound text, argv when ``split``); None after recording an error."""
    text = str(node.value)
    broken = unterminated(text)
    if broken is not None:
        s.r.error(
            s.r.find(node, broken),
            fld,
            f"malformed binding '{broken}'",
            "write ${{inputs.<name>}} or ${{outputs.<name>}}",
        )
        return None

    def given(ref: Ref) -> bool:
        port = inputs.get(ref.name) if ref.scope == "inputs" else None
        return port is None or port.provided

    try:
        expanded = expand_optional(text, given)
    except BlockError as exc:
        s.r.error(
            s.r.find(node, "$[[", exc.occurrence),
            fld,
            str(exc),
            "write $[[ --flag ${{inputs.<optional input>}} ]]",
        )
        return None
    errors = s.r.error_count

    def value_of(ref: Ref) -> str | None:
        value = _value(s, node, fld, ref, inputs, outputs, what)
        if value is None or not ref.scope == "inputs" or split:
            return value
        # A command is a shell string: a path with a space must stay one word. A literal
        # is put in as written, as on Azure (it may be meant to be several words).
        return value if inputs[ref.name].is_literal else shlex.quote(value)

    if split:
        try:
            bound, argv = bind_arguments(expanded, value_of)
        except ValueError as exc:  # shlex: "No closing quotation", "No escaped character"
            s.r.error(
                node,
                fld,
                f"cannot split the arguments like a shell: {exc}",
                "check that every quote is closed",
            )
            return None
    else:
        bound, argv = substitute(expanded, value_of), []
    return None if s.r.error_count > errors else (bound, argv)


def _value(
    s: Scope,
    node: yaml.ScalarNode,
    fld: str,
    ref: Ref,
    inputs: Mapping[str, Input],
    outputs: Mapping[str, Output],
    what: str,
) -> str | None:
    """The text a binding stands for; None after an error, or for a path not known yet."""
    where = s.r.find(node, ref.text)
    if ref.scope == "inputs" and ref.name in inputs:
        port = inputs[ref.name]
        if not port.provided:
            s.r.error(
                where,
                fld,
                f"{ref.text}: optional input '{ref.name}' is not given",
                "put the part that uses it in $[[ ... ]] so that it vanishes when the "
                "input is not given",
            )
            return None
        if port.is_literal:
            return port.value
        return None if port.path is None else str(port.path)
    if ref.scope == "outputs" and ref.name in outputs:
        path = outputs[ref.name].path
        run_dir = s.places.run_dir
        if path is None and run_dir is not None and s.step is not None:
            path = default_output_path(run_dir, s.step, ref.name)
        return None if path is None else str(path)
    if ref.scope in ("inputs", "outputs"):
        ports: Mapping[str, object] = inputs if ref.scope == "inputs" else outputs
        kind = ref.scope[:-1]
        hint = did_you_mean(ref.name, ports) or (
            f"this step's {ref.scope}: {', '.join(ports)}"
            if ports
            else f"declare it under the step's {ref.scope}:"
        )
        s.r.error(where, fld, f"{ref.text} names no {kind} '{ref.name}' of this step", hint)
    elif ref.scope.startswith("parent."):
        s.r.error(
            where,
            fld,
            f"{ref.text} cannot be used in {what}",
            "declare a step input bound to it and write ${{inputs.<name>}}",
        )
    else:
        s.r.error(
            where,
            fld,
            f"unknown binding {ref.text}",
            "expected ${{inputs.<name>}} or ${{outputs.<name>}}"
            + (
                " (${{name}} and the like belong in output paths)"
                if ref.scope in ("name", "default_datastore", "output_name")
                else ""
            ),
        )
    return None
