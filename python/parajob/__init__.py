"""parajob: run Azure ML parallel jobs locally, fast and crash-proof.

The public names below are imported on first use (module ``__getattr__``): ``import
parajob`` (the CLI, the entry-script import probe) stays light, and the modules behind them
may import the rest of the package freely.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

try:
    from parajob import _core
except ImportError as exc:  # pragma: no cover - only on a broken install
    raise ImportError(
        "parajob's compiled core (parajob._core) failed to import. "
        "Rebuild it with `pip install --force-reinstall --no-deps .` from the source tree, "
        f"with a C++20 compiler available. Original error: {exc}"
    ) from exc

from parajob.errors import Diagnostic, ParajobError, SpecError

__version__ = "0.1.0"

# public name -> the module that defines it (None: the name is itself a module of parajob)
_LAZY: dict[str, str | None] = {
    # running pipelines (parajob.api) and what a run gives back
    "run": "parajob.api",
    "RunResult": "parajob.results",
    "StepResult": "parajob.results",
    "Failure": "parajob.results",
    "Quarantined": "parajob.results",
    "ProgressEvent": "parajob.runtime.options",
    # the Azure SDK builder
    "Input": "parajob.entities",
    "Output": "parajob.entities",
    "Pipeline": "parajob.entities",
    "load": "parajob.entities",
    "command": "parajob.entities",
    "load_component": "parajob.entities",
    "dsl": None,
    # plain Python callables
    "map_batches": "parajob.mapping",
    "MapResult": "parajob.mapping",
    "MapStream": "parajob.mapping",
    "MapArgumentError": "parajob.mapping",
    "MapCancelled": "parajob.mapping",
    "MapFailed": "parajob.mapping",
}

__all__ = [
    "Diagnostic",
    "Failure",
    "Input",
    "MapArgumentError",
    "MapCancelled",
    "MapFailed",
    "MapResult",
    "MapStream",
    "Output",
    "ParajobError",
    "Pipeline",
    "ProgressEvent",
    "Quarantined",
    "RunResult",
    "SpecError",
    "StepResult",
    "__version__",
    "_core",
    "command",
    "dsl",
    "load",
    "load_component",
    "map_batches",
    "run",
]


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module 'parajob' has no attribute {name!r}")
    module = _LAZY[name]
    value = (
        import_module(f"parajob.{name}") if module is None else getattr(import_module(module), name)
    )
    globals()[name] = value  # looked up once
    return value


if TYPE_CHECKING:
    from parajob import dsl
    from parajob.api import run
    from parajob.entities import Input, Output, Pipeline, command, load, load_component
    from parajob.mapping import (
        MapArgumentError,
        MapCancelled,
        MapFailed,
        MapResult,
        MapStream,
        map_batches,
    )
    from parajob.results import Failure, Quarantined, RunResult, StepResult
    from parajob.runtime.options import ProgressEvent
