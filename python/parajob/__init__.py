"""parajob: run Azure ML parallel jobs locally, fast and crash-proof."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

try:
    from parajob import _core
except ImportError as exc:  # pragma: no cover - only on a broken install
    raise ImportError(
        "parajob's compiled core (parajob._core) failed to import. "
        "Rebuild it with `pip install --force-reinstall --no-deps .` from the source tree, "
        f"with a C++20 compiler available. Original error: {exc}"
    ) from exc

__version__ = "0.1.0"
__all__ = ["MapArgumentError", "MapCancelled", "MapFailed", "MapResult", "MapStream",
           "_core", "__version__", "map_batches"]

# Imported on first use: `import parajob` (the CLI, the import probe) stays light, and
# parajob.mapping may import the rest of the package freely.
_MAPPING = frozenset({"MapArgumentError", "MapCancelled", "MapFailed", "MapResult",
                      "MapStream", "map_batches"})


def __getattr__(name: str) -> Any:
    if name in _MAPPING:
        from parajob import mapping

        return getattr(mapping, name)
    raise AttributeError(f"module 'parajob' has no attribute {name!r}")


if TYPE_CHECKING:
    from parajob.mapping import (
        MapArgumentError,
        MapCancelled,
        MapFailed,
        MapResult,
        MapStream,
        map_batches,
    )
