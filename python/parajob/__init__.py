"""parajob: run Azure ML parallel jobs locally, fast and crash-proof."""

from __future__ import annotations

try:
    from parajob import _core
except ImportError as exc:  # pragma: no cover - only on a broken install
    raise ImportError(
        "parajob's compiled core (parajob._core) failed to import. "
        "Rebuild it with `pip install --force-reinstall --no-deps .` from the source tree, "
        f"with a C++20 compiler available. Original error: {exc}"
    ) from exc

from typing import TYPE_CHECKING, Any

from parajob.errors import Diagnostic, ParajobError, SpecError

if TYPE_CHECKING:
    from parajob.api import run
    from parajob.results import Failure, RunResult, StepResult
    from parajob.runtime.options import ProgressEvent

__version__ = "0.1.0"
__all__ = ["_core", "__version__", "Diagnostic", "Failure", "ParajobError", "ProgressEvent",
           "RunResult", "SpecError", "StepResult", "run"]

# The public API, imported on first use: `import parajob` (and `parajob --help`) stays quick.
_LAZY = {"run": "parajob.api", "RunResult": "parajob.results", "StepResult": "parajob.results",
         "Failure": "parajob.results", "ProgressEvent": "parajob.runtime.options"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'parajob' has no attribute {name!r}")
