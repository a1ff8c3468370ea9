"""Loading a user's entry script and calling init() / run() / shutdown() (SPEC §3)."""

from __future__ import annotations

import importlib.util
import inspect
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any


@dataclass
class MiniBatchContext:
    """The second argument of run(mini_batch, mini_batch_context)."""

    minibatch_index: int
    partition_key_value: dict[str, Any] | None = None
    dataset: Any = None


@dataclass(frozen=True)
class EntryScript:
    module: ModuleType
    init: Callable[[], Any] | None
    run: Callable[..., Any]
    shutdown: Callable[[], Any] | None
    takes_context: bool

    def call_run(self, mini_batch: Any, context: MiniBatchContext) -> Any:
        if self.takes_context:
            return self.run(mini_batch, context)
        return self.run(mini_batch)


class EntryScriptError(Exception):
    """The entry script cannot be used as one (no run(), wrong signature)."""


def import_entry_script(code_dir: Path, entry_script: str) -> ModuleType:
    """Import the script as a module with code_dir first on sys.path. Runs its top level."""
    path = (code_dir / entry_script).resolve()
    sys.path.insert(0, str(code_dir))
    name = Path(entry_script).stem
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise EntryScriptError(f"{path}: not a Python file that can be imported")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # so pickling and relative helpers inside the script work
    spec.loader.exec_module(module)
    return module


def bind_entry_script(module: ModuleType) -> EntryScript:
    """Find init/run/shutdown and decide how run() is called, from its signature."""
    path = getattr(module, "__file__", module.__name__)
    run = getattr(module, "run", None)
    if not callable(run):
        raise EntryScriptError(f"{path}: defines no run(mini_batch) function")
    try:
        params = [
            p for p in inspect.signature(run).parameters.values()
            if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
        ]
        has_varargs = any(
            p.kind == p.VAR_POSITIONAL for p in inspect.signature(run).parameters.values()
        )
    except (TypeError, ValueError):  # builtins without a signature: assume run(mini_batch)
        params, has_varargs = [], False
    required = [p for p in params if p.default is p.empty]
    if len(required) > 2:
        raise EntryScriptError(
            f"{path}: run() must take (mini_batch) or (mini_batch, mini_batch_context); "
            f"it requires {len(required)} arguments"
        )
    takes_context = len(params) >= 2 or has_varargs
    init = getattr(module, "init", None)
    shutdown = getattr(module, "shutdown", None)
    return EntryScript(
        module=module,
        init=init if callable(init) else None,
        run=run,
        shutdown=shutdown if callable(shutdown) else None,
        takes_context=takes_context,
    )
