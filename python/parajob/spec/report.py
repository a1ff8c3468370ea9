"""Collecting diagnostics with source positions.

A :class:`Reporter` belongs to one YAML file: it knows the file's display name and text,
turns PyYAML nodes (0-based marks) into 1-based line/column pairs, and appends
:class:`~parajob.errors.Diagnostic` objects to a list that may be shared by the reporters
of several files (a pipeline and the component files it names), so that every problem in
every file is reported in one :class:`~parajob.errors.SpecError`.

Nothing here raises on bad input: callers record a diagnostic and carry on with a
placeholder value, and the loader raises once at the end.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable

import yaml

from parajob.errors import Diagnostic

__all__ = ["Reporter", "did_you_mean", "closest"]


def closest(word: str, choices: Iterable[str], cutoff: float = 0.6) -> str | None:
    """The choice most like ``word`` (difflib ratio >= cutoff), or None."""
    pool = list(choices)
    matches = difflib.get_close_matches(word, pool, n=1, cutoff=cutoff)
    if not matches:
        # Case slips ("Mini_Batch_Size") score badly with difflib; catch them here.
        lowered = {c.lower(): c for c in pool}
        return lowered.get(word.lower())
    return matches[0]


def did_you_mean(word: str, choices: Iterable[str], *, quote: str = "'") -> str | None:
    """``"did you mean 'x'?"`` for the closest choice, or None when nothing is close."""
    match = closest(word, choices)
    return f"did you mean {quote}{match}{quote}?" if match is not None else None


class Reporter:
    """Records diagnostics for one file. Not thread-safe; one per load."""

    def __init__(self, file: str, text: str, sink: list[Diagnostic] | None = None) -> None:
        self.file = file
        self.text = text
        self.diagnostics: list[Diagnostic] = sink if sink is not None else []

    # -- positions ---------------------------------------------------------------------
    @staticmethod
    def position(node: yaml.Node | yaml.Mark | None) -> tuple[int | None, int | None]:
        """1-based (line, column) of a node's start, or (None, None)."""
        mark = node.start_mark if isinstance(node, yaml.Node) else node
        if mark is None:
            return None, None
        return mark.line + 1, mark.column + 1

    def find(
        self, node: yaml.Node, needle: str, occurrence: int = 0
    ) -> tuple[int | None, int | None]:
        """Position of the ``occurrence``-th ``needle`` inside ``node``'s source text, else
        the node's start. Points at one flag or binding inside a long (folded) string."""
        start, end = node.start_mark.index, node.end_mark.index
        at = start - 1
        for _ in range(occurrence + 1):
            at = self.text.find(needle, at + 1, max(end, start + len(needle)))
            if not needle or at < 0:
                return self.position(node)
        line = self.text.count("\n", 0, at) + 1
        column = at - (self.text.rfind("\n", 0, at) + 1) + 1
        return line, column

    # -- recording ---------------------------------------------------------------------
    def add(
        self,
        where: yaml.Node | yaml.Mark | tuple[int | None, int | None] | None,
        field: str,
        message: str,
        hint: str | None = None,
        severity: str = "error",
    ) -> None:
        line, column = where if isinstance(where, tuple) else self.position(where)
        self.diagnostics.append(
            Diagnostic(self.file, line, column, field, message, hint=hint, severity=severity)
        )

    def error(
        self,
        where: yaml.Node | yaml.Mark | tuple[int | None, int | None] | None,
        field: str,
        message: str,
        hint: str | None = None,
    ) -> None:
        self.add(where, field, message, hint, "error")

    def warning(
        self,
        where: yaml.Node | yaml.Mark | tuple[int | None, int | None] | None,
        field: str,
        message: str,
        hint: str | None = None,
    ) -> None:
        self.add(where, field, message, hint, "warning")

    @property
    def error_count(self) -> int:
        return sum(1 for d in self.diagnostics if d.severity == "error")
