"""Position-aware YAML reading.

``yaml.safe_load`` throws positions away and silently keeps the last of two duplicate keys.
We compose the file into PyYAML *nodes* instead (each has a ``start_mark``), check the
whole tree for duplicate keys once, and read values through the typed getters below, which
record a diagnostic (what was expected, what was found, where) and return None rather than
raise. Callers therefore never see a half-typed value: either the type is right or the
field is None and an error has been recorded.

The pure-Python ``SafeLoader`` is used on purpose: its marks index characters of the
decoded text, which :meth:`Reporter.find` relies on; the files are small.
"""

from __future__ import annotations

from collections.abc import Collection, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import yaml

from parajob.spec.report import Reporter, did_you_mean

__all__ = [
    "BoundedLoader",
    "MAX_DEPTH",
    "Entry",
    "compose",
    "describe",
    "entries",
    "field_join",
    "get_bool",
    "get_int",
    "get_str",
    "get_str_list",
    "get_str_map",
    "is_null",
    "named_entries",
    "read_mapping",
    "to_python",
]

STR = "tag:yaml.org,2002:str"
INT = "tag:yaml.org,2002:int"
FLOAT = "tag:yaml.org,2002:float"
BOOL = "tag:yaml.org,2002:bool"
NULL = "tag:yaml.org,2002:null"
MERGE = "tag:yaml.org,2002:merge"

# Hints for the YAML parser's most common complaints.
_YAML_HINTS = {
    "found character '\\t' that cannot start any token": "indent with spaces, not tabs",
    "mapping values are not allowed here": "quote values that contain ': ' (colon space)",
    "found undefined alias": "define the anchor (&name) before using it (*name)",
}


MAX_DEPTH = 100  # nesting levels; real pipelines use about 10


class BoundedLoader(yaml.SafeLoader):
    """SafeLoader that refuses nesting deeper than MAX_DEPTH with a located error.

    PyYAML's composer recurses once per level (two frames), so ``[[[[...]]]]`` 10,000 deep
    ended in a RecursionError traceback (issue 8); the parser and scanner do not recurse.
    Everything that walks the tree afterwards (duplicate keys, construct_object) is then
    bounded too."""

    _depth = 0

    def compose_node(self, parent: yaml.Node | None, index: int) -> yaml.Node | None:
        if self._depth >= MAX_DEPTH:
            # the event about to be composed: check_event() peeked it already
            event = self.current_event
            mark = event.start_mark if event is not None else None
            raise yaml.composer.ComposerError(
                None,
                None,
                f"the YAML is nested more than {MAX_DEPTH} levels deep (a pipeline needs about 10)",
                mark,
            )
        self._depth += 1
        try:
            node: yaml.Node | None = super().compose_node(parent, index)
            return node
        finally:
            self._depth -= 1


@dataclass(frozen=True)
class Entry:
    """One ``key: value`` pair of a mapping, with the dotted path of the value."""

    key: yaml.Node
    value: yaml.Node
    field: str


def field_join(path: str, key: str | int) -> str:
    """``jobs`` + ``score`` -> ``jobs.score``; a list index gives ``keys[0]``."""
    if isinstance(key, int):
        return f"{path}[{key}]"
    return f"{path}.{key}" if path else key


def compose(text: str, reporter: Reporter, name: str | None = None) -> yaml.Node | None:
    """Parse ``text`` into a node tree; on malformed YAML record the parser's position.

    Every mark in the tree carries ``name`` (default: the reporter's main file), which must
    be a source registered with the reporter: that is how a message about a node finds its
    file, and a relative path written in it finds its folder.
    """
    shown = name or reporter.file
    try:
        # The Reader checks every character here, in the constructor: a NUL byte or another
        # control character is a ReaderError before any parsing (issue 8).
        loader = BoundedLoader(text)
    except yaml.reader.ReaderError as exc:
        reporter.error(
            _reader_error_at(shown, text, exc),
            "",
            f"invalid YAML: {_character_name(exc.character)} is not allowed in a YAML file",
            "remove it; a NUL byte often means a binary or UTF-16 file",
        )
        return None
    loader.name = shown  # Reader sets "<unicode string>"; marks copy this
    try:
        root = loader.get_single_node()
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        problem = exc.problem or "malformed YAML"
        context = f"{exc.context}, " if exc.context else ""  # PyYAML's own order
        reporter.error(mark, "", f"invalid YAML: {context}{problem}", _YAML_HINTS.get(problem))
        return None
    except yaml.YAMLError as exc:  # reader errors (bad characters) carry no mark
        where = reporter.sources.get(name or reporter.file)
        reporter.error(
            (where.name if where else reporter.file, None, None), "", f"invalid YAML: {exc}"
        )
        return None
    finally:
        loader.dispose()
    if root is not None:
        _check_duplicate_keys(root, reporter, "", set())
    return root


def _character_name(character: object) -> str:
    code = character if isinstance(character, int) else ord(str(character)[:1] or "\0")
    return "a NUL byte (#x0000)" if code == 0 else f"the control character #x{code:04x}"


def _reader_error_at(shown: str, text: str, exc: yaml.reader.ReaderError) -> tuple[str, int, int]:
    """(source, 1-based line, column) of the character a ReaderError is about."""
    position = exc.position if isinstance(exc.position, int) else 0
    before = text[:position]
    return shown, before.count("\n") + 1, position - (before.rfind("\n") + 1) + 1


def _check_duplicate_keys(node: yaml.Node, r: Reporter, path: str, seen: set[int]) -> None:
    """PyYAML keeps the last of two equal keys without a word; we make it an error."""
    if id(node) in seen:  # an alias: already checked where it was defined
        return
    seen.add(id(node))
    if isinstance(node, yaml.MappingNode):
        first: dict[str, yaml.Node] = {}
        for key, value in node.value:
            if not isinstance(key, yaml.ScalarNode) or key.tag == MERGE:
                _check_duplicate_keys(value, r, path, seen)
                continue
            if key.value in first:
                line = first[key.value].start_mark.line + 1
                r.error(
                    key,
                    field_join(path, key.value),
                    f"duplicate key '{key.value}' (first given on line {line})",
                    "YAML would silently keep only the last one; remove or rename one",
                )
            else:
                first[key.value] = key
            _check_duplicate_keys(value, r, field_join(path, key.value), seen)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            _check_duplicate_keys(item, r, field_join(path, i), seen)


def entries(node: yaml.MappingNode) -> Iterator[tuple[yaml.Node, yaml.Node]]:
    """Key/value pairs with ``<<: *anchor`` merges applied (explicit keys win)."""
    explicit = [(k, v) for k, v in node.value if k.tag != MERGE]
    names = {k.value for k, _ in explicit if isinstance(k, yaml.ScalarNode)}
    yield from explicit
    for key, value in node.value:
        if key.tag != MERGE:
            continue
        sources = value.value if isinstance(value, yaml.SequenceNode) else [value]
        for source in sources:
            if not isinstance(source, yaml.MappingNode):
                continue
            for k, v in entries(source):
                if isinstance(k, yaml.ScalarNode) and k.value not in names:
                    names.add(k.value)
                    yield k, v


def is_null(node: yaml.Node | None) -> bool:
    return node is None or (isinstance(node, yaml.ScalarNode) and node.tag == NULL)


def to_python(node: yaml.Node) -> Any:
    """The plain Python value of a node (used for fields that are only recorded)."""
    return yaml.SafeLoader("").construct_object(node, deep=True)


def describe(node: yaml.Node) -> str:
    """What the user wrote, for "found ..." in messages."""
    if isinstance(node, yaml.MappingNode):
        return "a mapping"
    if isinstance(node, yaml.SequenceNode):
        return "a list"
    text = str(node.value)
    shown = text if len(text) <= 60 else text[:57] + "..."
    kinds = {INT: "integer", FLOAT: "number", BOOL: "boolean"}
    if node.tag == NULL:
        return "nothing (null)"
    if node.tag in kinds:
        return f"{kinds[node.tag]} {shown}"
    return f"string '{shown}'" if text else "an empty string"


def read_mapping(
    r: Reporter,
    node: yaml.Node,
    field: str,
    allowed: Collection[str],
    *,
    required: Collection[str] = (),
    misplaced: Mapping[str, str] | None = None,
    anchor: yaml.Node | None = None,
) -> dict[str, Entry] | None:
    """Read a mapping with a fixed set of keys.

    Unknown keys are errors with a "did you mean" hint (or a hint from ``misplaced`` when the
    key is known to belong elsewhere); missing ``required`` keys are errors reported at
    ``anchor`` (usually the key that owns this mapping). Keys whose value is empty (null)
    are left out of the result. Returns None when ``node`` is not a mapping.
    """
    if not isinstance(node, yaml.MappingNode):
        r.error(node, field, f"expected a mapping, found {describe(node)}")
        return None
    found: dict[str, Entry] = {}
    for key, value in entries(node):
        if not isinstance(key, yaml.ScalarNode):
            r.error(key, field, f"expected a plain key, found {describe(key)}")
            continue
        name = str(key.value)
        if name not in allowed:
            hint = (
                (misplaced or {}).get(name)
                or did_you_mean(name, allowed)
                or ("expected one of: " + ", ".join(sorted(allowed)))
            )
            r.error(key, field_join(field, name), f"unknown key '{name}'", hint)
            continue
        found[name] = Entry(key, value, field_join(field, name))
    for name in required:
        if name not in found or is_null(found[name].value):
            where = found[name].key if name in found else (anchor or node)
            r.error(where, field_join(field, name), f"missing required field '{name}'")
    # An empty value ("key:" alone) means "not given", as for the service's schema.
    return {name: e for name, e in found.items() if not is_null(e.value)}


def named_entries(r: Reporter, node: yaml.Node, field: str) -> list[Entry] | None:
    """A mapping whose keys the user chooses (inputs, outputs, jobs, tags)."""
    if is_null(node):
        return []
    if not isinstance(node, yaml.MappingNode):
        r.error(node, field, f"expected a mapping, found {describe(node)}")
        return None
    out: list[Entry] = []
    for key, value in entries(node):
        if not isinstance(key, yaml.ScalarNode) or key.tag == NULL:
            r.error(key, field, f"expected a name, found {describe(key)}")
            continue
        out.append(Entry(key, value, field_join(field, str(key.value))))
    return out


def _quote_hint(node: yaml.Node) -> str | None:
    if isinstance(node, yaml.ScalarNode) and node.tag in (INT, FLOAT, BOOL):
        return f'quote it to make it a string: "{node.value}"'
    return None


def get_str(r: Reporter, node: yaml.Node, field: str, *, allow_empty: bool = False) -> str | None:
    if isinstance(node, yaml.ScalarNode) and node.tag == STR:
        if not allow_empty and not str(node.value).strip():
            r.error(node, field, "expected a non-empty string, found an empty string")
            return None
        return str(node.value)
    r.error(node, field, f"expected a string, found {describe(node)}", _quote_hint(node))
    return None


def get_bool(r: Reporter, node: yaml.Node, field: str) -> bool | None:
    if isinstance(node, yaml.ScalarNode) and node.tag == BOOL:
        return bool(to_python(node))
    r.error(node, field, f"expected true or false, found {describe(node)}")
    return None


def _range_text(low: int | None, high: int | None, low_open: bool) -> str:
    if low is not None and high is not None:
        return f"in {'(' if low_open else '['}{low}, {high}]"
    if low is not None:
        return f"{'>' if low_open else '>='} {low}"
    return f"<= {high}" if high is not None else ""


def get_int(
    r: Reporter,
    node: yaml.Node,
    field: str,
    *,
    low: int | None = None,
    high: int | None = None,
    low_open: bool = False,
) -> int | None:
    """An integer in the given range; booleans, floats and quoted numbers are refused."""
    expected = f"an integer {_range_text(low, high, low_open)}".rstrip()
    if not (isinstance(node, yaml.ScalarNode) and node.tag == INT):
        hint = None
        if isinstance(node, yaml.ScalarNode) and node.tag == STR:
            if str(node.value).strip().lstrip("+-").isdigit():
                hint = f"remove the quotes: {str(node.value).strip()}"
        r.error(node, field, f"expected {expected}, found {describe(node)}", hint)
        return None
    value = int(to_python(node))
    too_low = low is not None and (value <= low if low_open else value < low)
    too_high = high is not None and value > high
    if too_low or too_high:
        r.error(node, field, f"expected {expected}, found {value}")
        return None
    return value


def _scalar_text(r: Reporter, node: yaml.Node, field: str) -> str | None:
    """The text of any non-null scalar, as written (``true`` stays ``true``)."""
    if isinstance(node, yaml.ScalarNode) and node.tag != NULL:
        return str(node.value)
    r.error(node, field, f"expected a string, found {describe(node)}")
    return None


def get_str_map(r: Reporter, node: yaml.Node, field: str) -> dict[str, str] | None:
    """``{name: text}`` (tags, environment variables); scalar values kept as written."""
    found = named_entries(r, node, field)
    if found is None:
        return None
    out: dict[str, str] = {}
    for e in found:
        text = _scalar_text(r, e.value, e.field)
        if text is not None:
            out[str(e.key.value)] = text
    return out


def get_str_list(r: Reporter, node: yaml.Node, field: str) -> list[str] | None:
    if not isinstance(node, yaml.SequenceNode):
        r.error(node, field, f"expected a list of strings, found {describe(node)}")
        return None
    out: list[str] = []
    for i, item in enumerate(node.value):
        text = get_str(r, item, field_join(field, i))
        if text is not None:
            out.append(text)
    return out
