"""MLTable files (docs/contract.md §7.2): YAML -> a frozen :class:`MLTable`.

An MLTable is a folder holding a YAML file named ``MLTable``::

    paths:                      # file: (a file or a folder), folder:, pattern: (glob, **)
      - pattern: ./**/*.csv
    transformations:            # in order; a read_* step makes it a table
      - read_delimited: {delimiter: ",", header: all_files_same_headers}
      - extract_columns_from_partition_format: {partition_format: "{Store}/{Brand}/{f}.csv"}
      - drop_columns: [Path]

Invariants: loading never reads data files; every problem in the file is collected and
raised at once as :class:`TableInputError` whose diagnostics name the MLTable file, the
line and the field (``transformations[1].read_delimited.header``), what was expected and
a hint. Transformations that parajob does not implement are errors, never ignored.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from parajob.data import transforms as tf
from parajob.data.input_errors import TableInputError, Where
from parajob.errors import Diagnostic
from parajob.spec.report import did_you_mean
from parajob.spec.yaml_nodes import BoundedLoader

__all__ = ["MLTable", "PathEntry", "Reader", "TableInputError", "Where", "load_mltable"]


@dataclass(frozen=True)
class PathEntry:
    kind: str  # "file" | "folder" | "pattern"
    value: str
    where: Where


@dataclass(frozen=True)
class Reader:
    """The read_* transformation: its kind and its options (defaults filled in)."""

    kind: str  # "delimited" | "parquet" | "json_lines"
    options: dict[str, Any]
    where: Where


@dataclass(frozen=True)
class MLTable:
    file: Path
    paths: tuple[PathEntry, ...]
    reader: Reader | None
    steps: tuple[tf.Step, ...]  # the other transformations, in order

    @property
    def folder(self) -> Path:
        return self.file.parent

    @property
    def is_tabular(self) -> bool:
        """A table when a read_* transformation is present, else a list of files."""
        return self.reader is not None


ENCODINGS = {
    "utf8": "utf8",
    "utf-8": "utf8",
    "utf8bom": "utf8bom",
    "ascii": "ascii",
    "latin1": "latin1",
    "iso88591": "latin1",
    "windows1252": "cp1252",
    "utf16": "utf16",
    "utf32": "utf32",
}
HEADERS = ("no_header", "from_first_file", "all_files_different_headers", "all_files_same_headers")

# Reader options: name -> (default, allowed values or a type).
READERS: dict[str, tuple[str, dict[str, tuple[Any, Any]]]] = {
    "read_delimited": (
        "delimited",
        {
            "delimiter": (",", str),
            "encoding": ("utf8", tuple(ENCODINGS)),
            "header": ("all_files_same_headers", HEADERS),
            "infer_column_types": (True, bool),
            "empty_as_string": (False, bool),
            "include_path_column": (False, bool),
            "support_multi_line": (False, bool),
        },
    ),
    "read_parquet": ("parquet", {"include_path_column": (False, bool)}),
    "read_json_lines": (
        "json_lines",
        {
            "include_path_column": (False, bool),
            "invalid_lines": ("error", ("error", "drop")),
            "encoding": ("utf8", tuple(ENCODINGS)),
        },
    ),
}
UNSUPPORTED = {
    "read_delta_lake": "Delta Lake tables are not supported by parajob",
    "filter": "filter expressions are not supported by parajob",
    "take_random_sample": "take_random_sample is not supported by parajob (it would differ "
    "from Azure's sample anyway)",
}
STEPS = (
    "take",
    "skip",
    "drop_columns",
    "keep_columns",
    "convert_column_types",
    "extract_columns_from_partition_format",
)
TOP_LEVEL = ("paths", "transformations", "type", "$schema", "traits", "metadata")


def load_mltable(path: Path) -> MLTable:
    """Read ``path`` (an MLTable folder, or the MLTable file itself) without reading data.

    Raises TableInputError with every problem found.
    """
    file = path / "MLTable" if path.is_dir() else path
    if not file.is_file():
        raise Where(str(file)).error(
            "MLTable file not found",
            "an mltable input names a folder holding a file called MLTable",
        )
    try:
        text = file.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise Where(str(file)).error(f"cannot read the MLTable file: {exc}") from exc
    return _Parser(file, text).parse()


class _Parser:
    """One MLTable file: typed reads of nodes; diagnostics gathered, raised at the end."""

    def __init__(self, file: Path, text: str) -> None:
        self.file, self.text = file, text
        self.diagnostics: list[Diagnostic] = []

    def where(self, node: yaml.Node | None, field: str) -> Where:
        if node is None:
            return Where(str(self.file), None, None, field)
        mark = node.start_mark
        return Where(str(self.file), mark.line + 1, mark.column + 1, field)

    def error(
        self, node: yaml.Node | None, field: str, message: str, hint: str | None = None
    ) -> None:
        w = self.where(node, field)
        self.diagnostics.append(Diagnostic(w.file, w.line, w.column, field, message, hint))

    def parse(self) -> MLTable:
        try:
            root = yaml.compose(self.text, Loader=BoundedLoader)  # nesting: a located error
        except yaml.MarkedYAMLError as exc:
            mark = exc.problem_mark
            line, col = (mark.line + 1, mark.column + 1) if mark else (None, None)
            raise TableInputError(
                [Diagnostic(str(self.file), line, col, "", f"invalid YAML: {exc.problem}")]
            ) from exc
        except yaml.YAMLError as exc:
            raise Where(str(self.file)).error(f"invalid YAML: {exc}") from exc
        top = self.mapping(root, "", TOP_LEVEL) if root is not None else None
        if root is None or top is None:
            self.error(
                root,
                "",
                "expected a mapping with a 'paths:' list",
                "an MLTable looks like:  paths: [{file: ./data.csv}]",
            )
            raise TableInputError(self.diagnostics)
        paths = self.paths(top.get("paths"), root)
        reader, steps = self.transformations(top.get("transformations"))
        if self.diagnostics:
            raise TableInputError(self.diagnostics)
        return MLTable(self.file, tuple(paths), reader, tuple(steps))

    # -- node helpers ---------------------------------------------------------------
    def mapping(
        self, node: yaml.Node, field: str, allowed: Iterable[str]
    ) -> dict[str, tuple[yaml.Node, yaml.Node]] | None:
        if not isinstance(node, yaml.MappingNode):
            return None
        allowed = tuple(allowed)
        out: dict[str, tuple[yaml.Node, yaml.Node]] = {}
        for key, value in node.value:
            name = str(key.value)
            sub = f"{field}.{name}" if field else name
            if name in out:
                self.error(key, sub, f"duplicate key '{name}'")
            elif name not in allowed:
                self.error(
                    key,
                    sub,
                    f"unknown key '{name}'",
                    did_you_mean(name, allowed) or "expected one of: " + ", ".join(allowed),
                )
            else:
                out[name] = (key, value)
        return out

    def value(self, node: yaml.Node) -> Any:
        return yaml.SafeLoader("").construct_object(node, deep=True)

    def string_list(self, node: yaml.Node, field: str) -> tuple[str, ...] | None:
        value = self.value(node)
        items = [value] if isinstance(value, str) else value
        if not isinstance(items, list) or not items or not all(isinstance(v, str) for v in items):
            self.error(
                node, field, f"expected a column name or a list of column names, found {value!r}"
            )
            return None
        return tuple(items)

    # -- sections ---------------------------------------------------------------------
    def paths(self, entry: tuple[yaml.Node, yaml.Node] | None, root: yaml.Node) -> list[PathEntry]:
        if entry is None:
            self.error(
                root,
                "paths",
                "missing 'paths:' (the files of the table)",
                "add  paths: [{file: ./data.csv}]  or a folder: / pattern: entry",
            )
            return []
        key, node = entry
        if not isinstance(node, yaml.SequenceNode) or not node.value:
            self.error(node, "paths", "expected a non-empty list of file:, folder: or pattern:")
            return []
        out: list[PathEntry] = []
        for i, item in enumerate(node.value):
            field = f"paths[{i}]"
            value = self.value(item)
            if not (isinstance(value, dict) and len(value) == 1):
                self.error(item, field, "expected one of file:, folder:, pattern: with a path")
                continue
            ((kind, text),) = value.items()
            if kind not in ("file", "folder", "pattern"):
                self.error(
                    item,
                    f"{field}.{kind}",
                    f"unknown key '{kind}'",
                    did_you_mean(str(kind), ("file", "folder", "pattern"))
                    or "expected file, folder or pattern",
                )
            elif not isinstance(text, str) or not text.strip():
                self.error(item, f"{field}.{kind}", f"expected a path, found {text!r}")
            else:
                out.append(PathEntry(kind, text, self.where(item, f"{field}.{kind}")))
        return out

    def transformations(
        self, entry: tuple[yaml.Node, yaml.Node] | None
    ) -> tuple[Reader | None, list[tf.Step]]:
        if entry is None or self.value(entry[1]) is None:
            return None, []
        node = entry[1]
        if not isinstance(node, yaml.SequenceNode):
            self.error(node, "transformations", "expected a list of transformations")
            return None, []
        reader: Reader | None = None
        steps: list[tf.Step] = []
        known = (*READERS, *STEPS, *UNSUPPORTED)
        for i, item in enumerate(node.value):
            field = f"transformations[{i}]"
            if isinstance(item, yaml.ScalarNode):
                name, args = str(item.value), None
            elif isinstance(item, yaml.MappingNode) and len(item.value) == 1:
                name, args = str(item.value[0][0].value), item.value[0][1]
            else:
                self.error(
                    item,
                    field,
                    "expected one transformation, such as "
                    "'- read_delimited: {...}' or '- take: 10'",
                )
                continue
            sub = f"{field}.{name}"
            if name in UNSUPPORTED:
                self.error(item, sub, UNSUPPORTED[name])
            elif name in READERS:
                if reader is not None:
                    self.error(
                        item,
                        sub,
                        f"a second read transformation ('{name}')",
                        "an MLTable has one read_delimited, read_parquet or read_json_lines",
                    )
                reader = self.reader(name, args, item, sub)
            elif name in STEPS:
                step = self.step(name, args, self.where(item, sub))
                if step is not None:
                    steps.append(step)
            else:
                self.error(
                    item,
                    sub,
                    f"unknown transformation '{name}'",
                    did_you_mean(name, known) or "expected one of: " + ", ".join(known),
                )
        return reader, steps

    def reader(self, name: str, args: yaml.Node | None, item: yaml.Node, field: str) -> Reader:
        kind, spec = READERS[name]
        options = {k: default for k, (default, _) in spec.items()}
        given = (
            self.mapping(args, field, spec)
            if args is not None
            and not (isinstance(args, yaml.ScalarNode) and self.value(args) is None)
            else {}
        )
        if given is None:
            self.error(args, field, "expected a mapping of options")
            given = {}
        for key, (_, node) in given.items():
            value, allowed = self.value(node), spec[key][1]
            sub = f"{field}.{key}"
            if isinstance(allowed, tuple):
                if value not in allowed:
                    self.error(
                        node,
                        sub,
                        f"expected one of {', '.join(allowed)}; found {value!r}",
                        did_you_mean(str(value), allowed),
                    )
                    continue
            elif allowed is bool and not isinstance(value, bool):
                self.error(node, sub, f"expected true or false, found {value!r}")
                continue
            elif allowed is str and (not isinstance(value, str) or not value):
                self.error(node, sub, f"expected a string, found {value!r}")
                continue
            options[key] = value
        if kind == "delimited" and len(options["delimiter"].encode("utf-8")) != 1:
            self.error(
                given.get("delimiter", (item, item))[1],
                f"{field}.delimiter",
                f"expected a one-byte delimiter, found {options['delimiter']!r}",
            )
        for key in ("encoding",):
            if key in options:
                options[key] = ENCODINGS[options[key]]
        return Reader(kind, options, self.where(item, field))

    def step(self, name: str, args: yaml.Node | None, where: Where) -> tf.Step | None:
        node = args if args is not None else None
        value = self.value(node) if node is not None else None
        field = where.field
        if name in ("take", "skip"):
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                self.error(node, field, f"expected a row count (an integer >= 0), found {value!r}")
                return None
            return tf.RowWindow(where, name, value)
        if name in ("drop_columns", "keep_columns"):
            columns = self.string_list(node, field) if node is not None else None
            if columns is None:
                if node is None:
                    self.error(None, field, "expected a list of column names")
                return None
            return tf.SelectColumns(where, name == "keep_columns", columns)
        if name == "convert_column_types":
            return self.conversions(node, value, where)
        return self.partition_format(node, value, where)

    def conversions(self, node: yaml.Node | None, value: Any, where: Where) -> tf.Step | None:
        items = value if isinstance(value, list) else None
        if not items:
            self.error(node, where.field, "expected a list of {columns: ..., column_type: ...}")
            return None
        out: list[tf.Conversion] = []
        for i, item in enumerate(items):
            sub = f"{where.field}[{i}]"
            item_node = node.value[i] if isinstance(node, yaml.SequenceNode) else node
            if not isinstance(item, dict) or set(item) != {"columns", "column_type"}:
                self.error(
                    item_node, sub, "expected {columns: <name or list>, column_type: <type>}"
                )
                continue
            columns = [item["columns"]] if isinstance(item["columns"], str) else item["columns"]
            try:
                out.append(tf.Conversion.parse(tuple(columns), item["column_type"]))
            except ValueError as exc:
                self.error(item_node, f"{sub}.column_type", str(exc))
        return tf.ConvertColumns(where, tuple(out)) if out else None

    def partition_format(self, node: yaml.Node | None, value: Any, where: Where) -> tf.Step | None:
        if isinstance(value, dict) and "partition_format" in value:
            text = value["partition_format"]
            extra = set(value) - {"partition_format", "path_column", "ignore_error"}
            if extra:
                self.error(
                    node,
                    where.field,
                    f"unknown key '{sorted(extra)[0]}'",
                    "expected partition_format (and optionally ignore_error)",
                )
            ignore = bool(value.get("ignore_error", False))
        elif isinstance(value, dict) and len(value) == 1 and next(iter(value.values())) is None:
            # The docs' "{column_name:yyyy/MM/dd}" unquoted is a YAML mapping: undo that.
            text, ignore = "{" + str(next(iter(value))) + "}", False
        else:
            text, ignore = value, False
        if not isinstance(text, str) or not text:
            self.error(
                node,
                where.field,
                f"expected a partition format such as "
                f"'{{Store}}/{{Brand}}/{{file_name}}.csv', found {value!r}",
            )
            return None
        try:
            return tf.PartitionColumns(where, tf.PartitionFormat.parse(text), ignore)
        except ValueError as exc:
            self.error(node, where.field, str(exc))
            return None
