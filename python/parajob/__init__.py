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
__all__ = ["_core", "__version__"]
