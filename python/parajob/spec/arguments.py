"""The runtime flags that may appear in ``task.program_arguments`` (docs/contract.md §2.3).

Azure's runtime reads its own flags from the same argv as the entry script with
``parse_known_args(allow_abbrev=False)`` and leaves everything in ``sys.argv``. We do the
same: this module only *reads* the known flags; the argv given to the script is never
changed. Unknown flags pass through untouched (``--model_name`` included: the service once
reserved it and broke users, docs/contract.md §2.3). A flag a small edit away from a
known one (``--resource_monitor_interva``, the typo in Azure's own iris example) gets a
warning, never an error. A known flag with a bad value is an error.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, fields, replace
from typing import Any

from parajob.errors import Diagnostic
from parajob.spec.schema import MAX_TIMEOUT
from parajob.spec.sizes import parse_mini_batch_size

__all__ = [
    "RuntimeArgs",
    "ArgProblem",
    "RUNTIME_FLAGS",
    "parse_program_arguments",
    "read_runtime_args",
]


@dataclass(frozen=True)
class RuntimeArgs:
    """Values of the runtime flags found in the program arguments (None: not given)."""

    error_threshold: int | None = None
    allowed_failed_percent: float = 100
    allowed_failed_count: int | None = None
    task_overhead_timeout: float = 30
    progress_update_timeout: float | None = None  # None => 3 * (timeout + overhead)
    first_task_creation_timeout: float = 600
    copy_logs_to_parent: bool = False
    resource_monitor_interval: float = 600  # 0 = off
    logging_level: str | None = None
    run_invocation_timeout: int | None = None
    process_count_per_node: int | None = None
    mini_batch_size: str | None = None
    append_row_file_name: str = "parallel_run_step.txt"
    profiling_module: str | None = None
    # parajob's own (not Azure's: there it passes through to the script untouched): bisect a
    # mini-batch whose retries are spent, quarantining at most this many items of it
    # (runtime/isolation.py); 0: off.
    isolate_failures: int = 0

    def progress_timeout(self, run_timeout: float) -> float:
        """``--progress_update_timeout``, or its default 3 × (run timeout + overhead)."""
        if self.progress_update_timeout is not None:
            return self.progress_update_timeout
        return 3 * (run_timeout + self.task_overhead_timeout)


@dataclass(frozen=True)
class ArgProblem:
    """A problem with one argv token; the loader turns it into a positioned Diagnostic."""

    token: str  # the flag as written (without "=value")
    index: int  # its position in argv, to find the right occurrence in the source
    message: str
    hint: str | None = None
    severity: str = "error"


# -- value converters: text -> value, ValueError(message) when the text is wrong ----------
def _number(text: str, *, integer: bool) -> float:
    try:
        value: float = int(text) if integer else float(text)
    except ValueError:
        kind = "an integer" if integer else "a number"
        raise ValueError(f"expected {kind}, found '{text}'") from None
    if math.isnan(value) or math.isinf(value):
        raise ValueError(f"expected a finite number, found '{text}'")
    return value


def _ranged(
    low: float,
    high: float,
    *,
    low_open: bool = False,
    integer: bool = False,
    none_at: float | None = None,
) -> Callable[[str], Any]:
    """A converter for numbers in [low, high] (or (low, high]); ``none_at`` maps to None."""

    def convert(text: str) -> Any:
        value = _number(text, integer=integer)
        if none_at is not None and value == none_at:
            return None
        if (value <= low if low_open else value < low) or value > high:
            if high == math.inf:
                span = f"{'>' if low_open else '>='} {low:g}"
            else:
                span = f"in {'(' if low_open else '['}{low:g}, {high:g}]"
            raise ValueError(f"expected a value {span}, found '{text}'")
        return int(value) if integer else value

    return convert


def _boolean(text: str) -> bool:
    lowered = text.strip().lower()
    if lowered in ("true", "yes", "1"):
        return True
    if lowered in ("false", "no", "0"):
        return False
    raise ValueError(f"expected True or False, found '{text}'")


def _choice(*allowed: str, upper: bool = False) -> Callable[[str], Any]:
    def convert(text: str) -> Any:
        value = text.upper() if upper else text
        if value in allowed:
            return value or None
        shown = ", ".join(a or "''" for a in allowed)
        raise ValueError(f"expected one of {shown}, found '{text}'")

    return convert


def _batch_size(text: str) -> str:
    parse_mini_batch_size(text)
    return text


_FORBIDDEN_NAME_CHARS = set('~"#%&*:<>?/\\{|}')


def _file_name(text: str) -> str:
    if not text or _FORBIDDEN_NAME_CHARS & set(text):
        raise ValueError(f"expected a file name without any of ~\"#%&*:<>?/\\{{|}}, found '{text}'")
    return text


INT_MAX = math.inf
RUNTIME_FLAGS: dict[str, Callable[[str], Any]] = {
    "error_threshold": _ranged(-1, INT_MAX, integer=True),
    "allowed_failed_percent": _ranged(0, 100),
    "allowed_failed_count": _ranged(-1, INT_MAX, integer=True),
    "task_overhead_timeout": _ranged(0, MAX_TIMEOUT, low_open=True),
    "progress_update_timeout": _ranged(0, MAX_TIMEOUT, low_open=True, none_at=-1),
    "first_task_creation_timeout": _ranged(0, MAX_TIMEOUT, low_open=True),
    "copy_logs_to_parent": _boolean,
    "resource_monitor_interval": _ranged(0, INT_MAX),
    "logging_level": _choice("DEBUG", "INFO", "WARNING", upper=True),
    "run_invocation_timeout": _ranged(0, MAX_TIMEOUT, low_open=True, integer=True),
    "process_count_per_node": _ranged(1, INT_MAX, integer=True),
    "mini_batch_size": _batch_size,
    "append_row_file_name": _file_name,
    "profiling_module": _choice("", "cProfile", "profile"),
    "isolate_failures": _ranged(0, INT_MAX, integer=True),
}
assert set(RUNTIME_FLAGS) == {f.name for f in fields(RuntimeArgs)}

# Flags read (and checked) but not acted upon by this version: each one given is warned
# about by name, never accepted in silence. Empty since issue 11 implemented the last three
# (--resource_monitor_interval, --copy_logs_to_parent, --profiling_module); a flag Azure
# adds later goes into RUNTIME_FLAGS and here until parajob honours it.
NOT_IMPLEMENTED: frozenset[str] = frozenset()
assert NOT_IMPLEMENTED <= set(RUNTIME_FLAGS)


def _edit_distance(a: str, b: str) -> int:
    """Levenshtein distance (small strings; O(len(a) * len(b)))."""
    previous = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        current = [i]
        for j, cb in enumerate(b, 1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (ca != cb)))
        previous = current
    return previous[-1]


def _near_miss(name: str) -> str | None:
    """The runtime flag an unknown ``-x``/``--x`` token was probably meant to be."""
    normal = name.lstrip("-").replace("-", "_").lower()
    if normal in RUNTIME_FLAGS:  # one dash, "-" for "_", or capitals: not the flag to argparse
        return f"--{normal}"
    best = min(RUNTIME_FLAGS, key=lambda flag: _edit_distance(normal, flag))
    return f"--{best}" if _edit_distance(normal, best) <= 2 else None


def _is_number(token: str) -> bool:
    try:
        float(token)
    except ValueError:
        return False
    return True


def read_runtime_args(argv: Sequence[str]) -> tuple[RuntimeArgs, list[ArgProblem]]:
    """Read the runtime flags in ``argv`` (never changes it). See the module docstring."""
    values: dict[str, Any] = {}
    problems: list[ArgProblem] = []
    i = 0
    while i < len(argv):
        token = argv[i]
        i += 1
        if token == "--":
            break  # argparse: everything after "--" is positional
        if not token.startswith("-") or _is_number(token):
            continue
        at = i - 1
        name, has_inline, inline = token.partition("=")
        flag = name[2:] if name.startswith("--") else ""
        if flag not in RUNTIME_FLAGS:
            intended = _near_miss(name)
            if intended is not None:
                problems.append(
                    ArgProblem(
                        name,
                        at,
                        f"'{name}' is not a runtime flag; it is passed to the entry script "
                        "unchanged",
                        f"did you mean '{intended}'?",
                        "warning",
                    )
                )
            continue
        if has_inline:
            text = inline
        elif i < len(argv) and (not argv[i].startswith("-") or _is_number(argv[i])):
            text = argv[i]
            i += 1
        else:
            problems.append(
                ArgProblem(name, at, f"'{name}' expects a value", f"write '{name} VALUE'")
            )
            continue
        try:
            value = RUNTIME_FLAGS[flag](text)
        except ValueError as exc:
            problems.append(ArgProblem(name, at, f"{name}: {exc}"))
            continue
        if flag in values and values[flag] != value:
            problems.append(
                ArgProblem(
                    name,
                    at,
                    f"'{name}' is given more than once; the last value ({text}) is used",
                    severity="warning",
                )
            )
        if flag == "append_row_file_name" and value != value.lower():
            problems.append(
                ArgProblem(
                    name,
                    at,
                    f"Azure's runtime lower-cases --append_row_file_name: '{value}' is "
                    f"written as '{value.lower()}'",
                    severity="warning",
                )
            )
            value = value.lower()
        if flag in NOT_IMPLEMENTED:
            problems.append(
                ArgProblem(
                    name,
                    at,
                    f"'{name}' is accepted but not implemented by parajob: it has no effect here",
                    severity="warning",
                )
            )
        values[flag] = value
    return replace(RuntimeArgs(), **values), problems


def parse_program_arguments(argv: Sequence[str]) -> tuple[RuntimeArgs, list[Diagnostic]]:
    """Public form of :func:`read_runtime_args`: problems as unpositioned Diagnostics."""
    args, problems = read_runtime_args(argv)
    return args, [
        Diagnostic("", None, None, "program_arguments", p.message, p.hint, p.severity)
        for p in problems
    ]
