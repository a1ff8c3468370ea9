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

__version__ = "0.1.0"
__all__ = ["_core", "__version__", "Input", "Output", "Pipeline", "load", "command", "dsl",
           "load_component"]

# The Azure SDK builder (parajob.entities, parajob.dsl), imported on first use so that
# `import parajob` stays fast.
_SDK_EXPORTS = {"Input": "parajob.entities", "Output": "parajob.entities",
                "Pipeline": "parajob.entities", "load": "parajob.entities",
                "command": "parajob.entities", "load_component": "parajob.entities",
                "dsl": None}


def __getattr__(name: str) -> object:
    if name not in _SDK_EXPORTS:
        raise AttributeError(f"module 'parajob' has no attribute {name!r}")
    import importlib

    module = _SDK_EXPORTS[name]
    if module is None:
        return importlib.import_module(f"parajob.{name}")
    return getattr(importlib.import_module(module), name)
