"""A light check of an MLTable file, before any worker starts.

On Azure a misplaced MLTable path fails minutes into the run, on the cluster
(docs/contract.md §7.2). Here the file must be YAML mapping with a
``paths:`` list whose ``file:`` / ``folder:`` entries exist (relative to the MLTable's
folder); ``pattern:`` entries and ``transformations`` are read later by ``parajob.data``.
Messages point into the MLTable file itself.
"""

from __future__ import annotations

import os
from pathlib import Path

import yaml

from parajob.spec.report import Reporter, Source, shown_path
from parajob.spec.yaml_nodes import compose, describe, field_join, get_str, read_mapping

__all__ = ["check_mltable"]

_PATH_KINDS = ("file", "folder", "pattern")


def check_mltable(r: Reporter, mltable: Path) -> None:
    """Record problems of the MLTable file ``mltable`` (once per file and load)."""
    shown = shown_path(mltable)
    if shown in r.sources:
        return
    try:
        text = mltable.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        r.error((shown, None, None), "", f"cannot read the MLTable file: {exc}")
        return
    r.add_source(Source(shown, text, mltable.parent, True, mltable))
    root = compose(text, r, shown)
    if root is None:
        if text.strip():
            return  # malformed YAML, reported
        r.error(
            (shown, None, None),
            "",
            "the MLTable file is empty",
            "it needs at least 'paths:' with - file: / - folder: / - pattern: entries",
        )
        return
    if not isinstance(root, yaml.MappingNode):
        r.error(root, "", f"expected a mapping in the MLTable file, found {describe(root)}")
        return
    paths = next((v for k, v in root.value if getattr(k, "value", None) == "paths"), None)
    if paths is None:
        r.error(
            root,
            "paths",
            "the MLTable file has no 'paths:'",
            "list the data: paths: [{file: ./data.csv}] or [{folder: ./files}]",
        )
        return
    if not isinstance(paths, yaml.SequenceNode) or not paths.value:
        r.error(
            paths,
            "paths",
            f"expected a list of file:/folder:/pattern: entries, found {describe(paths)}",
        )
        return
    for i, item in enumerate(paths.value):
        fld = field_join("paths", i)
        keys = read_mapping(r, item, fld, _PATH_KINDS)
        if keys is None:
            continue
        if len(keys) != 1:
            r.error(item, fld, "each entry of paths: has exactly one of file:, folder:, pattern:")
            continue
        ((kind, entry),) = keys.items()
        value = get_str(r, entry.value, entry.field)
        if value is None or kind == "pattern" or "://" in value:
            continue  # patterns may match nothing yet; URIs are resolved by parajob.data
        target = Path(os.path.normpath(mltable.parent / value))
        if not target.exists():
            r.error(
                entry.value,
                entry.field,
                f"{kind} '{value}' does not exist (looked for {target})",
                "paths in an MLTable file are relative to its folder",
            )
        elif kind == "folder" and not target.is_dir():
            r.error(
                entry.value,
                entry.field,
                f"folder '{value}' is a file",
                "write - file: for a single file",
            )
