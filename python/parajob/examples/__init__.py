"""The examples bundled with parajob, and ``parajob example NAME DIR``, which writes one out.

    parajob/examples/<name>/  (package data: in every wheel and every install)
        --copy (no __pycache__, no runs/) into a temporary folder beside DIR-->
        --rename--> DIR (new, or an empty folder)

One copy: the repository's ``examples/<name>`` is a symlink to the folder here, so
``parajob run examples/word_count/pipeline.yml`` in a checkout runs the very files a wheel
user gets from ``parajob example word_count DIR``. An example is a folder here holding a
``pipeline.yml``; its ``description:`` is the line ``parajob example`` lists it with.

Invariants: a DIR that exists and is not empty is refused before anything is written (so
nothing of the user's is ever overwritten); the copy is whole or absent: it is made in a
temporary folder next to DIR and renamed into place, and removed if anything fails.
Bad input (an unknown name, a DIR in the way) is a SpecError naming it, with the fix.
"""

from __future__ import annotations

import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import yaml

from parajob.errors import Diagnostic, SpecError

__all__ = ["Example", "bundled", "write_example"]

# The package's own folder, not importlib.resources: parajob is never imported from a zip
# (it holds a compiled extension), so its data files are plain files next to this one.
HERE = Path(__file__).resolve().parent
# What a run or an import leaves in an example folder (a checkout's, run in place).
_LEFT_BY_RUNS = shutil.ignore_patterns("__pycache__", "*.pyc", "runs")


@dataclass(frozen=True)
class Example:
    """One bundled example: its name (the folder's) and the pipeline's description."""

    name: str
    path: Path
    description: str


def bundled() -> list[Example]:
    """Every bundled example, by name."""
    found = []
    for folder in sorted(HERE.iterdir()):
        pipeline = folder / "pipeline.yml"
        if pipeline.is_file():
            spec = yaml.safe_load(pipeline.read_text(encoding="utf-8"))
            description = spec.get("description", "") if isinstance(spec, dict) else ""
            found.append(Example(folder.name, folder, str(description)))
    return found


def write_example(name: str, target: Path) -> Example:
    """Copy example ``name`` into ``target`` (made, with its parents, if missing)."""
    examples = {e.name: e for e in bundled()}
    example = examples.get(name)
    if example is None:
        from parajob.spec.report import did_you_mean

        raise _bad(
            "parajob example",
            "NAME",
            f"unknown example {name!r} (the examples: {', '.join(examples)})",
            did_you_mean(name, examples) or "`parajob example` lists them",
        )
    if target.exists() and not target.is_dir():
        raise _bad(str(target), "DIR", "is a file", "give a new or an empty folder")
    if target.is_dir() and any(target.iterdir()):
        raise _bad(
            str(target),
            "DIR",
            "exists and is not empty: nothing was written",
            f"give a new or an empty folder, for example {target.name}-2",
        )
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(prefix=f".{target.name}.", dir=target.parent) as tmp:
            staged = Path(tmp) / name
            shutil.copytree(example.path, staged, ignore=_LEFT_BY_RUNS, copy_function=shutil.copy)
            # rename(2) replaces an empty folder, and fails if one appeared with files in it.
            staged.rename(target)
    except OSError as exc:
        raise _bad(str(target), "DIR", f"cannot write the example: {exc.strerror or exc}") from exc
    return example


def _bad(where: str, field: str, message: str, hint: str | None = None) -> SpecError:
    return SpecError([Diagnostic(where, None, None, field, message, hint)])
