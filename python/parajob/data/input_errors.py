"""Errors about tabular input found before any worker starts, with their place.

:class:`TableInputError` carries compiler-like diagnostics (file, line, field, message,
hint); the runtime turns it into a SpecError (exit code 2). It is a ValueError so that
callers that only know "bad input" (``except ValueError``) still catch it.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from parajob.errors import Diagnostic

__all__ = ["TableInputError", "Where"]


class TableInputError(ValueError):
    """Bad tabular input (MLTable, data files, partition keys): exit code 2."""

    def __init__(self, diagnostics: Iterable[Diagnostic]) -> None:
        self.diagnostics = list(diagnostics)
        super().__init__("\n".join(str(d) for d in self.diagnostics))


@dataclass(frozen=True)
class Where:
    """A place in a file, for messages: 1-based line and column, dotted field."""

    file: str
    line: int | None = None
    column: int | None = None
    field: str = ""

    def diagnostic(self, message: str, hint: str | None = None) -> Diagnostic:
        return Diagnostic(self.file, self.line, self.column, self.field, message, hint)

    def error(self, message: str, hint: str | None = None) -> TableInputError:
        return TableInputError([self.diagnostic(message, hint)])
