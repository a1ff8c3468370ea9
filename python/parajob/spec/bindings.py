"""``${{...}}`` binding expressions.

Grammar (docs/contract.md §1.2; whitespace inside the braces is allowed)::

    ${{inputs.<n>}}  ${{outputs.<n>}}              step ports (program_arguments, input_data, ...)
    ${{parent.inputs.<n>}}  ${{parent.outputs.<n>}}  pipeline ports (a step's inputs/outputs)
    ${{parent.jobs.<step>.outputs.<n>}}            another step's output (a DAG edge)
    ${{name}}  ${{default_datastore}}  ${{output_name}}   output paths

This module only recognises and substitutes; what a reference *means* (which path, which
value) is decided by the caller through a ``value_of`` function, so later kinds (DAG edges,
datastores, ``$[[...]]`` optional blocks) add cases there, not here.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "Ref",
    "BINDING",
    "OPTIONAL_BLOCK",
    "BlockError",
    "bind_arguments",
    "default_output_path",
    "expand_optional",
    "find_refs",
    "parse_ref",
    "substitute",
    "unterminated",
    "whole_ref",
]

BINDING = re.compile(r"\$\{\{\s*([^{}\s]*)\s*\}\}")
OPTIONAL_BLOCK = re.compile(r"\$\[\[")
_NAME = r"[A-Za-z_][A-Za-z0-9_]*"
_FORMS = [
    ("inputs", re.compile(rf"inputs\.({_NAME})")),
    ("outputs", re.compile(rf"outputs\.({_NAME})")),
    ("parent.inputs", re.compile(rf"parent\.inputs\.({_NAME})")),
    ("parent.outputs", re.compile(rf"parent\.outputs\.({_NAME})")),
    ("parent.jobs", re.compile(rf"parent\.jobs\.([A-Za-z0-9_-]+)\.outputs\.({_NAME})")),
    ("name", re.compile(r"name")),
    ("default_datastore", re.compile(r"default_datastore")),
    ("output_name", re.compile(r"output_name")),
]


@dataclass(frozen=True)
class Ref:
    """One ``${{...}}`` occurrence.

    ``scope`` is one of the forms above (``inputs``, ``parent.jobs``, ...) or ``invalid``;
    ``name`` is the port name (empty for ``name``-like scopes); ``step`` is set for
    ``parent.jobs``. ``text`` is the binding exactly as written, for messages and positions.
    """

    text: str
    expr: str
    scope: str
    name: str = ""
    step: str | None = None


def parse_ref(text: str, expr: str) -> Ref:
    for scope, pattern in _FORMS:
        m = pattern.fullmatch(expr)
        if m is None:
            continue
        if scope == "parent.jobs":
            return Ref(text, expr, scope, m.group(2), m.group(1))
        return Ref(text, expr, scope, m.group(1) if m.groups() else "")
    return Ref(text, expr, "invalid")


def find_refs(text: str) -> list[Ref]:
    return [parse_ref(m.group(0), m.group(1)) for m in BINDING.finditer(text)]


def whole_ref(text: str) -> Ref | None:
    """The binding when ``text`` is exactly one ``${{...}}`` (surrounding spaces allowed)."""
    m = BINDING.fullmatch(text.strip())
    return parse_ref(m.group(0), m.group(1)) if m else None


def unterminated(text: str) -> str | None:
    """The start of a ``${{`` that never becomes a binding (missing ``}}``, spaces inside)."""
    rest = BINDING.sub("", text)
    at = rest.find("${{")
    return rest[at : at + 40] if at >= 0 else None


def substitute(text: str, value_of: Callable[[Ref], str | None]) -> str:
    """Replace each binding by ``value_of(ref)``; None leaves that binding as written."""

    def one(m: re.Match[str]) -> str:
        value = value_of(parse_ref(m.group(0), m.group(1)))
        return m.group(0) if value is None else value

    return BINDING.sub(one, text)


def bind_arguments(text: str, value_of: Callable[[Ref], str | None]) -> tuple[str, list[str]]:
    """``program_arguments`` after binding: (the string, the shell-split argv).

    The argv is split *before* values are put in (each binding is first replaced by a
    placeholder with no shell-special characters), so a bound path with spaces or quotes
    stays one argument, as on the service where it is one mounted path. Raises ValueError
    when the text does not split like a shell command line (e.g. an unclosed quote).
    """
    values: list[str] = []

    def hold(m: re.Match[str]) -> str:  # value_of is called once per binding
        value = value_of(parse_ref(m.group(0), m.group(1)))
        values.append(m.group(0) if value is None else value)
        return f"\0{len(values) - 1}\0"

    held = BINDING.sub(hold, text)
    placeholder = re.compile(r"\0(\d+)\0")

    def put_back(s: str) -> str:
        return placeholder.sub(lambda m: values[int(m.group(1))], s)

    argv = [put_back(token) for token in shlex.split(held)]
    bound = put_back(held)
    return bound, argv


class BlockError(ValueError):
    """A ``$[[`` block that is not closed, or opened inside another; ``occurrence`` is which
    ``$[[`` of the text (0-based) to point at."""

    def __init__(self, message: str, occurrence: int) -> None:
        super().__init__(message)
        self.occurrence = occurrence


def expand_optional(text: str, given: Callable[[Ref], bool]) -> str:
    """Resolve ``$[[ ... ]]`` blocks: a block becomes its content when every binding in it
    is ``given``, and vanishes otherwise (docs/contract.md §1.2). Blocks do not nest.
    Raises BlockError for an unclosed or nested block."""
    out: list[str] = []
    at = 0
    while (start := text.find("$[[", at)) >= 0:
        end = text.find("]]", start + 3)
        inner_start = text.find("$[[", start + 3)
        if end < 0:
            raise BlockError(
                "optional block '$[[' is never closed with ']]'", text.count("$[[", 0, start)
            )
        if 0 <= inner_start < end:
            raise BlockError("optional blocks cannot be nested", text.count("$[[", 0, inner_start))
        inner = text[start + 3 : end]
        out.append(text[at:start])
        if all(given(ref) for ref in find_refs(inner)):
            out.append(inner)
        at = end + 2
    out.append(text[at:])
    return "".join(out)


def default_output_path(run_dir: Path, step: str, output: str) -> Path:
    """Where an output with no ``path:`` lives: ``<run_dir>/<step>/outputs/<output>``.

    The same for a folder and a ``uri_file`` output (then it is the file itself).
    """
    return run_dir / step / "outputs" / output
