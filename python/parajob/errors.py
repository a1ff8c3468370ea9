"""Error types shared by the CLI, the spec loader and the runtime.

Bad input (a pipeline YAML that does not follow the contract, a missing path, a broken
entry script) is a :class:`SpecError` and makes ``parajob run`` exit with code 2; a job that
ran and exceeded a limit is :class:`JobFailed` (exit code 1). Neither should ever surface
as a traceback from parajob's own code: the CLI prints ``str(error)``.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

__all__ = ["Diagnostic", "ParajobError", "SpecError", "JobFailed", "ValidationError"]


@dataclass(frozen=True)
class Diagnostic:
    """One message about the user's input, printed like a compiler's.

    ``line`` and ``column`` are 1-based and None when unknown (a file that cannot be read,
    a message about the whole file). ``field`` is the dotted path of the offending field,
    e.g. ``jobs.score.mini_batch_size``; empty when the message is about the whole file.
    """

    file: str
    line: int | None
    column: int | None
    field: str
    message: str
    hint: str | None = None
    severity: str = "error"  # or "warning"

    def __str__(self) -> str:
        where = self.file or "<input>"
        if self.line is not None:
            where += f":{self.line}"
            if self.column is not None:
                where += f":{self.column}"
        field = f"{self.field}: " if self.field else ""
        text = f"{where}: {self.severity}: {field}{self.message}"
        if self.hint:
            text += f"\n  hint: {self.hint}"
        return text


class ParajobError(Exception):
    """Base class of every error parajob raises on purpose."""


class SpecError(ParajobError):
    """The input is wrong (pipeline YAML, paths, entry script): exit code 2.

    ``diagnostics`` holds every problem found, errors and warnings, in source order, so
    that the user fixes them all in one round.
    """

    def __init__(self, diagnostics: Iterable[Diagnostic]) -> None:
        self.diagnostics: list[Diagnostic] = list(diagnostics)
        super().__init__(str(self))

    def __str__(self) -> str:
        return "\n".join(str(d) for d in self.diagnostics)

    @property
    def errors(self) -> list[Diagnostic]:
        """The diagnostics with severity ``error`` (there is at least one)."""
        return [d for d in self.diagnostics if d.severity == "error"]


class JobFailed(ParajobError):
    """The job ran and failed (a threshold or timeout was exceeded): exit code 1."""


class ValidationError(ParajobError, ValueError):
    """A Python builder (``parajob.Input``, ``parallel_run_function``, ``dsl.pipeline``, ...)
    was given a bad value. The message is the Azure ML SDK's for the same mistake (where the
    SDK raises ValidationException), so an SDK user recognises it; ``parameter`` names the
    parameter at fault. A ValueError too: the SDK raises ValueError for some of them."""

    def __init__(self, message: str, parameter: str | None = None) -> None:
        super().__init__(message)
        self.parameter = parameter
