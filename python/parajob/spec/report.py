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

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import yaml

from parajob.errors import Diagnostic

__all__ = ["Reporter", "Source", "did_you_mean", "closest", "shown_path"]


def shown_path(path: Path) -> str:
    """A path as messages show it: relative to the working folder when it is below it."""
    import os

    rel = os.path.relpath(path)
    return path.as_posix() if rel.startswith("..") else rel


def closest(word: str, choices: Iterable[str], cutoff: float = 0.6) -> str | None:
    """The choice most like ``word`` (difflib ratio >= cutoff), or None."""
    import difflib  # here: only a message's suggestion needs it

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


@dataclass(frozen=True)
class Source:
    """A text that nodes come from: a YAML file, or one ``--set`` value (no positions)."""

    name: str  # as shown in messages (the path as the user gave it)
    text: str
    folder: Path | None  # relative paths written in it are relative to this folder
    positions: bool = True
    path: Path | None = None  # the file, absolute (None for a --set value)


# Where a diagnostic points: a node or mark, a (line, column) in the main file, or
# (source name, line, column) from Reporter.find.
Where = (
    yaml.Node
    | yaml.Mark
    | tuple[int | None, int | None]
    | tuple[str, int | None, int | None]
    | None
)


class Reporter:
    """Records diagnostics for one load: the main file and the files it names (components,
    ``--set`` values), each a :class:`Source` keyed by the name its marks carry (see
    :func:`~parajob.spec.yaml_nodes.compose`). Not thread-safe; one per load."""

    def __init__(
        self, file: str, text: str, sink: list[Diagnostic] | None = None, folder: Path | None = None
    ) -> None:
        self.file = file
        self.text = text
        self.diagnostics: list[Diagnostic] = sink if sink is not None else []
        path = folder / Path(file).name if folder is not None else None
        self.sources: dict[str, Source] = {file: Source(file, text, folder, True, path)}

    def add_source(self, source: Source) -> None:
        self.sources[source.name] = source

    def source_of(self, node: yaml.Node | yaml.Mark | None) -> Source:
        """The source a node was read from (the main file for nodes made in code)."""
        mark = node.start_mark if isinstance(node, yaml.Node) else node
        name = getattr(mark, "name", None)
        return self.sources.get(name or "", self.sources[self.file])

    def folder_of(self, node: yaml.Node) -> Path | None:
        return self.source_of(node).folder

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
    ) -> tuple[str, int | None, int | None]:
        """Position of the ``occurrence``-th ``needle`` inside ``node``'s source text, else
        the node's start. Points at one flag or binding inside a long (folded) string."""
        source = self.source_of(node)
        text = source.text
        start, end = node.start_mark.index, node.end_mark.index
        at = start - 1
        for _ in range(occurrence + 1):
            at = text.find(needle, at + 1, max(end, start + len(needle)))
            if not needle or at < 0:
                return (source.name, *self.position(node))
        line = text.count("\n", 0, at) + 1
        column = at - (text.rfind("\n", 0, at) + 1) + 1
        return source.name, line, column

    # -- recording ---------------------------------------------------------------------
    def add(
        self,
        where: Where,
        field: str,
        message: str,
        hint: str | None = None,
        severity: str = "error",
    ) -> None:
        if isinstance(where, tuple) and len(where) == 3:
            source = self.sources.get(str(where[0]), self.sources[self.file])
            line, column = where[1], where[2]
        elif isinstance(where, tuple):
            source, (line, column) = self.sources[self.file], where
        else:
            source, (line, column) = self.source_of(where), self.position(where)
        if not source.positions:
            line = column = None
        self.diagnostics.append(
            Diagnostic(source.name, line, column, field, message, hint=hint, severity=severity)
        )

    def error(
        self,
        where: Where,
        field: str,
        message: str,
        hint: str | None = None,
    ) -> None:
        self.add(where, field, message, hint, "error")

    def warning(
        self,
        where: Where,
        field: str,
        message: str,
        hint: str | None = None,
    ) -> None:
        self.add(where, field, message, hint, "warning")

    @property
    def error_count(self) -> int:
        return sum(1 for d in self.diagnostics if d.severity == "error")
