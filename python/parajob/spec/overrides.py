"""``--set jobs.<step>.<field>=<value>``: edits of the YAML tree before it is read.

Each value is parsed as YAML (``5`` is an integer, ``"10kb"`` a string, ``[a, b]`` a list)
and put into the node tree at the dotted path, so it is validated exactly like the file; a
message about it names the ``--set`` it came from. Relative paths in a value are relative
to the pipeline file, as if written there. The step must exist (a typo must not create a
new step); other missing keys are created, and then checked like any key. Mappings on the
way are copied before they are changed, so an anchor shared by two steps changes for the
step named only.
"""

from __future__ import annotations

from collections.abc import Sequence

import yaml

from parajob.spec.report import Reporter, Source, did_you_mean
from parajob.spec.yaml_nodes import compose, describe, entries

__all__ = ["apply_overrides"]

_MAP = "tag:yaml.org,2002:map"
_STR = "tag:yaml.org,2002:str"


def apply_overrides(
    r: Reporter, root: yaml.MappingNode, overrides: Sequence[str], single_step: str | None = None
) -> None:
    """Apply each ``KEY=VALUE`` to ``root`` in order; problems are recorded in ``r``.
    ``single_step``: the file is one job, addressed as ``jobs.<single_step>.<field>`` or
    ``<field>``."""
    folder = r.sources[r.file].folder
    for text in overrides:
        name = f"--set {text}"
        key, eq, value_text = text.partition("=")
        r.add_source(Source(name, value_text, folder, positions=False))
        path = key.strip().split(".")
        if not eq or not all(path):
            r.error(
                (name, None, None),
                "",
                "expected --set KEY=VALUE with a dotted KEY, e.g. jobs.score.mini_batch_size=10",
            )
            continue
        errors = r.error_count
        value = compose(value_text, r, name)
        if r.error_count > errors:
            continue  # malformed YAML, reported by compose
        if value is None:
            value = yaml.ScalarNode("tag:yaml.org,2002:null", "", *_marks(name))
        if single_step is not None and path[:2] == ["jobs", single_step]:
            path = path[2:]
        if path:
            _set(r, root, path, value, name, single_step is None)


def _marks(name: str) -> tuple[yaml.Mark, yaml.Mark]:
    mark = yaml.Mark(name, 0, 0, 0, None, 0)  # no buffer: no snippet
    return mark, mark


def _set(
    r: Reporter,
    root: yaml.MappingNode,
    path: list[str],
    value: yaml.Node,
    name: str,
    is_pipeline: bool,
) -> None:
    node: yaml.Node = root
    for depth, segment in enumerate(path):
        done = ".".join(path[:depth]) or "the file"
        if not isinstance(node, yaml.MappingNode):
            r.error(
                (name, None, None),
                ".".join(path),
                f"cannot set '{'.'.join(path)}': '{done}' is {describe(node)}, not a mapping",
            )
            return
        last = depth == len(path) - 1
        index = _find(node, segment)
        if index is None and is_pipeline and depth == 1 and path[0] == "jobs":
            steps = [str(k.value) for k, _ in entries(node)]
            r.error(
                (name, None, None),
                ".".join(path[:2]),
                f"the pipeline has no step '{segment}'",
                did_you_mean(segment, steps)
                or (f"its steps: {', '.join(steps)}" if steps else None),
            )
            return
        if last:
            key = yaml.ScalarNode(_STR, segment, value.start_mark, value.end_mark)
            if index is None:
                node.value.append((key, value))
            else:
                node.value[index] = (node.value[index][0], value)
            return
        if index is None:
            child: yaml.Node = yaml.MappingNode(_MAP, [], *_marks(name))
            node.value.append((yaml.ScalarNode(_STR, segment, *_marks(name)), child))
        else:
            key, child = node.value[index]
            if isinstance(child, yaml.MappingNode):  # copy: it may be an anchor used elsewhere
                child = yaml.MappingNode(
                    child.tag, list(child.value), child.start_mark, child.end_mark
                )
                node.value[index] = (key, child)
        node = child


def _find(node: yaml.MappingNode, key: str) -> int | None:
    """Index of the last explicit ``key`` in the mapping; a key that only comes from a
    ``<<`` merge is copied in as an explicit one (which then wins)."""
    for i in range(len(node.value) - 1, -1, -1):
        k = node.value[i][0]
        if isinstance(k, yaml.ScalarNode) and k.value == key and k.tag != "tag:yaml.org,2002:merge":
            return i
    for k, v in entries(node):
        if isinstance(k, yaml.ScalarNode) and k.value == key:
            node.value.append((k, v))
            return len(node.value) - 1
    return None
