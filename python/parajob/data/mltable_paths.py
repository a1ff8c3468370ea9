"""The files an MLTable's ``paths:`` names, in a stable order.

- ``file:`` a file; a folder is accepted too and means every file under it (the examples
  write ``- file: ./mnist``).
- ``folder:`` every file under the folder, recursively.
- ``pattern:`` a glob: ``*`` and ``?`` within one path segment, ``[abc]`` classes, and
  ``**`` as a whole segment for any number of folders. Hidden files and folders (a name
  starting with '.') match only where the pattern writes the dot.

Relative paths are relative to the MLTable's folder; ``file://`` URIs are local paths;
remote URIs (``azureml://``, ``https://``...) are errors, as nothing can reach them
locally. Each entry's files are in byte-wise path order (the C++ listing's order); the
entries keep the MLTable's order; a file named twice is kept once, where it first appears.
Every problem is a TableInputError pointing at its entry.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from parajob import _core
from parajob.data.input_errors import TableInputError
from parajob.data.mltable import MLTable, PathEntry

__all__ = ["DataFile", "resolve_files"]

_GLOB_CHARS = re.compile(r"[*?\[]")
_URI = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:(//)?")


@dataclass(frozen=True)
class DataFile:
    path: str  # absolute
    relpath: str  # '/'-separated, relative to the MLTable folder (absolute if outside)


def resolve_files(table: MLTable) -> list[DataFile]:
    """Every file of every ``paths:`` entry; raises TableInputError listing all problems."""
    seen: set[str] = set()
    files: list[DataFile] = []
    problems = []
    for entry in table.paths:
        try:
            found = _entry_files(table.folder, entry)
        except TableInputError as exc:
            problems.extend(exc.diagnostics)
            continue
        for path in found:
            if path not in seen:
                seen.add(path)
                files.append(DataFile(path, _relative(path, table.folder)))
    if problems:
        raise TableInputError(problems)
    return files


def _relative(path: str, folder: Path) -> str:
    rel = os.path.relpath(path, folder)
    return path if rel.startswith("..") else rel.replace(os.sep, "/")


def _local(entry: PathEntry, folder: Path) -> Path:
    text = entry.value
    if text.startswith("file://"):
        text = text[len("file://") :]
    elif _URI.match(text) and not re.match(r"^[A-Za-z]:[\\/]", text):
        raise entry.where.error(
            f"'{entry.value}' is a remote location; parajob reads local files only",
            "copy the data next to the MLTable and use a relative path",
        )
    path = Path(text)
    return path if path.is_absolute() else folder / path


def _listing(folder: Path, entry: PathEntry) -> list[str]:
    try:
        listing = _core.list_files(str(folder))
    except OSError as exc:
        raise entry.where.error(f"cannot list {folder}: {exc}") from exc
    return listing.paths(0, len(listing))


def _entry_files(base: Path, entry: PathEntry) -> list[str]:
    target = _local(entry, base)
    if entry.kind == "pattern":
        return _pattern_files(target, entry)
    if entry.kind == "file" and target.is_file():
        return [os.path.abspath(target)]
    if target.is_dir():
        return _listing(target, entry)
    what = "file or folder" if entry.kind == "file" else "folder"
    raise entry.where.error(
        f"{what} not found: {target}", "paths are relative to the folder holding the MLTable file"
    )


def _pattern_files(target: Path, entry: PathEntry) -> list[str]:
    parts = [p for p in str(target).split("/") if p not in ("", ".")]
    fixed: list[str] = []
    for part in parts:
        if _GLOB_CHARS.search(part):
            break
        fixed.append(part)
    rest = parts[len(fixed) :]
    prefix = Path("/" + "/".join(fixed)) if str(target).startswith("/") else Path(*fixed)
    if not rest:  # no wildcard at all: the pattern names one file
        return [os.path.abspath(prefix)] if prefix.is_file() else []
    if not prefix.is_dir():
        raise entry.where.error(f"folder not found: {prefix} (the fixed part of the pattern)")
    regex = re.compile(glob_regex(rest))
    root = os.path.abspath(prefix)
    matched = [p for p in _listing(prefix, entry) if regex.fullmatch(os.path.relpath(p, root))]
    if not matched:
        raise entry.where.error(f"pattern '{entry.value}' matches no file under {prefix}")
    return matched


def glob_regex(segments: list[str]) -> str:
    """A regex for '/'-separated relative paths matching the glob segments."""
    out = ""
    for i, seg in enumerate(segments):
        last = i == len(segments) - 1
        if seg == "**":
            out += r"(?:[^/.][^/]*/)*" if not last else r"(?:[^/.][^/]*)(?:/[^/.][^/]*)*"
            continue
        out += _segment_regex(seg) + ("" if last else "/")
    return out


def _segment_regex(seg: str) -> str:
    out = "" if seg.startswith(".") else r"(?!\.)"
    i = 0
    while i < len(seg):
        c = seg[i]
        if c == "*":
            out += "[^/]*"
        elif c == "?":
            out += "[^/]"
        elif c == "[" and seg.find("]", i + 2) >= 0:
            end = seg.find("]", i + 2)
            body = seg[i + 1 : end]
            body = "^" + body[1:] if body.startswith("!") else body
            out += "[" + body.replace("\\", "\\\\") + "]"
            i = end
        else:
            out += re.escape(c)
        i += 1
    return out
