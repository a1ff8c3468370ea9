"""MLTable column transformations on Arrow tables (the Arrow -> pandas step is in dtypes.py).

Every mini-batch of a table goes through the same :class:`Finisher`: the raw columns read
from one file, then the ``Path`` column, then the transformations in the MLTable's order
(partition-format columns, drop/keep, type conversions). Row windows (``take``/``skip``)
are not applied here: they are global, so the planner turns them into row ranges per
mini-batch (tables.py).

Invariants:
- The result's schema depends only on the raw schema and the steps, never on the rows,
  so every mini-batch has the same columns and dtypes; the planner checks the steps on
  an empty table first (:meth:`Finisher.final_schema`), so a step naming a missing column
  is an error before any worker starts.
- Datetimes parsed from text (conversions, partition formats) are ``dtypes.TEXT_DATETIME``;
  the Arrow -> pandas step (:func:`to_pandas`) and every other type decision are in
  dtypes.py, their one owner.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from parajob.data.dtypes import TEXT_DATETIME
from parajob.data.input_errors import Where

__all__ = [
    "Conversion",
    "ConvertColumns",
    "Finisher",
    "PartitionColumns",
    "PartitionFormat",
    "RowWindow",
    "SelectColumns",
    "Step",
    "PATH_COLUMN",
]

PATH_COLUMN = "Path"
DEFAULT_TRUE = ("True", "true", "TRUE", "1")
DEFAULT_FALSE = ("False", "false", "FALSE", "0")
KINDS = ("int", "float", "string", "boolean", "datetime")


@dataclass(frozen=True)
class Step:
    where: Where


@dataclass(frozen=True)
class RowWindow(Step):
    name: str  # "take" | "skip"
    count: int


@dataclass(frozen=True)
class SelectColumns(Step):
    keep: bool  # keep_columns (True) or drop_columns (False)
    columns: tuple[str, ...]


@dataclass(frozen=True)
class Conversion:
    """One ``convert_column_types`` entry: columns -> one of KINDS."""

    columns: tuple[str, ...]
    kind: str
    formats: tuple[str, ...] = ()
    true_values: tuple[str, ...] = DEFAULT_TRUE
    false_values: tuple[str, ...] = DEFAULT_FALSE
    mismatch_as: str = "error"

    @classmethod
    def parse(cls, columns: tuple[str, ...], column_type: Any) -> Conversion:
        """From the YAML value; ValueError says what was expected."""
        if not columns or not all(isinstance(c, str) for c in columns):
            raise ValueError(f"expected column names, found {list(columns)!r}")
        if isinstance(column_type, str):
            if column_type not in KINDS:
                raise ValueError(
                    f"unknown column_type '{column_type}'; expected one of " + ", ".join(KINDS)
                )
            return cls(columns, column_type)
        if isinstance(column_type, dict) and len(column_type) == 1:
            ((kind, options),) = column_type.items()
            options = options or {}
            if kind == "datetime" and isinstance(options, dict) and set(options) <= {"formats"}:
                formats = options.get("formats") or []
                formats = [formats] if isinstance(formats, str) else formats
                return cls(columns, "datetime", formats=tuple(str(f) for f in formats))
            allowed = {"true_values", "false_values", "mismatch_as"}
            if kind == "boolean" and isinstance(options, dict) and set(options) <= allowed:
                mismatch = str(options.get("mismatch_as", "error"))
                if mismatch not in ("error", "true", "false"):
                    raise ValueError(
                        f"mismatch_as must be error, true or false; found '{mismatch}'"
                    )
                return cls(
                    columns,
                    "boolean",
                    true_values=tuple(map(str, options.get("true_values", DEFAULT_TRUE))),
                    false_values=tuple(map(str, options.get("false_values", DEFAULT_FALSE))),
                    mismatch_as=mismatch,
                )
        raise ValueError(
            f"unsupported column_type {column_type!r}; expected one of "
            + ", ".join(KINDS)
            + ", {datetime: {formats: [...]}} or "
            "{boolean: {true_values: [...], false_values: [...], mismatch_as: ...}}"
        )

    def apply(self, values: pa.ChunkedArray, column: str) -> pa.ChunkedArray:
        """The converted column; ValueError names the column and the first bad value."""
        try:
            return self._convert(values)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
            raise ValueError(
                f"convert_column_types: column '{column}' to {self.kind}: {exc}"
            ) from None
        except _BadValue as exc:
            raise ValueError(
                f"convert_column_types: column '{column}' to {self.kind}: value "
                f"{exc.args[0]!r} {exc.args[1]}"
            ) from None

    def _convert(self, values: pa.ChunkedArray) -> pa.ChunkedArray:
        t = values.type
        if self.kind == "string":
            return pc.cast(values, pa.string())
        if pa.types.is_string(t) or pa.types.is_large_string(t):
            # An empty text (kept by empty_as_string) is no number, date or boolean: null.
            values = pc.if_else(pc.equal(values, ""), pa.scalar(None, t), values)
        if self.kind in ("int", "float"):
            if pa.types.is_string(t) or pa.types.is_large_string(t):
                values = pc.utf8_trim_whitespace(values)
            return pc.cast(values, pa.int64() if self.kind == "int" else pa.float64())
        if self.kind == "boolean":
            return self._to_bool(values)
        return self._to_datetime(values)

    def _to_bool(self, values: pa.ChunkedArray) -> pa.ChunkedArray:
        t = values.type
        if pa.types.is_boolean(t):
            return values
        if pa.types.is_integer(t) or pa.types.is_floating(t):
            return pc.not_equal(values, 0)
        text = pc.cast(values, pa.string())
        is_true = pc.is_in(text, value_set=pa.array(self.true_values, pa.string()))
        is_false = pc.is_in(text, value_set=pa.array(self.false_values, pa.string()))
        mismatch = pc.and_(pc.is_valid(text), pc.invert(pc.or_(is_true, is_false)))
        if pc.any(mismatch).as_py():
            if self.mismatch_as == "error":
                bad = text.filter(mismatch)[0].as_py()
                raise _BadValue(
                    bad,
                    f"is in neither true_values {list(self.true_values)} nor "
                    f"false_values {list(self.false_values)}",
                )
            if self.mismatch_as == "true":
                is_true = pc.or_(is_true, mismatch)
        return pc.if_else(pc.is_valid(text), is_true, pa.scalar(None, pa.bool_()))

    def _to_datetime(self, values: pa.ChunkedArray) -> pa.ChunkedArray:
        t = values.type
        if pa.types.is_timestamp(t):
            return values
        if pa.types.is_date(t):
            return pc.cast(values, TEXT_DATETIME)
        text = pc.cast(values, pa.string())
        if not self.formats:
            return pc.cast(text, TEXT_DATETIME)
        parsed = [
            pc.strptime(text, format=f, unit=TEXT_DATETIME.unit, error_is_null=True)
            for f in self.formats
        ]
        result = pc.coalesce(*parsed) if len(parsed) > 1 else parsed[0]
        failed = pc.and_(pc.is_valid(text), pc.is_null(result))
        if pc.any(failed).as_py():
            raise _BadValue(
                text.filter(failed)[0].as_py(), f"matches none of the formats {list(self.formats)}"
            )
        return result

    def arrow_type(self) -> pa.DataType:
        return {
            "int": pa.int64(),
            "float": pa.float64(),
            "string": pa.string(),
            "boolean": pa.bool_(),
            "datetime": TEXT_DATETIME,
        }[self.kind]


class _BadValue(Exception):
    pass


@dataclass(frozen=True)
class ConvertColumns(Step):
    conversions: tuple[Conversion, ...]


_DATE_TOKENS = {
    "yyyy": (r"\d{4}", "%Y"),
    "MM": (r"\d{2}", "%m"),
    "dd": (r"\d{2}", "%d"),
    "HH": (r"\d{2}", "%H"),
    "mm": (r"\d{2}", "%M"),
    "ss": (r"\d{2}", "%S"),
}
_PLACEHOLDER = re.compile(r"\{([^{}:]+)(?::([^{}]+))?\}")


@dataclass(frozen=True)
class PartitionFormat:
    """``{Store}/{Brand}/{file_name}.{extension}`` or ``/year={y}/{d:yyyy/MM/dd}``.

    Each ``{name}`` matches one path segment's worth of text (no '/'); ``{name:format}``
    matches a date laid out with yyyy MM dd HH mm ss and gives a datetime. The format is
    matched against a file's path relative to the MLTable folder: first as a suffix of the
    path, else at the first segment where it matches with more segments after it.
    """

    text: str
    names: tuple[str, ...]
    date_formats: tuple[str | None, ...]  # strptime format per name, None: a string
    suffix: re.Pattern[str]
    anywhere: re.Pattern[str]

    @classmethod
    def parse(cls, text: str) -> PartitionFormat:
        names: list[str] = []
        formats: list[str | None] = []
        regex, at = "", 0
        for m in _PLACEHOLDER.finditer(text):
            regex += re.escape(text[at : m.start()])
            name, layout = m.group(1).strip(), m.group(2)
            if name in names:
                raise ValueError(f"partition format '{text}' names {{{name}}} twice")
            names.append(name)
            if layout is None:
                regex += "([^/]*)"
                formats.append(None)
            else:
                part, fmt = _date_layout(layout)
                regex += f"({part})"
                formats.append(fmt)
            at = m.end()
        regex += re.escape(text[at:])
        if not names:
            raise ValueError(f"partition format '{text}' has no {{column}} placeholder")
        body = regex[2:] if regex.startswith(r"\/") else regex.lstrip("/")
        return cls(
            text,
            tuple(names),
            tuple(formats),
            re.compile(f"(?:^|/){body}$"),
            re.compile(f"(?:^|/){body}(?:/|$)"),
        )

    def extract(self, path: str) -> tuple[str | datetime, ...] | None:
        """The values of the placeholders in ``path`` ('/'-separated), None if no match."""
        m = self.suffix.search(path) or self.anywhere.search(path)
        if m is None:
            return None
        out: list[str | datetime] = []
        for value, fmt in zip(m.groups(), self.date_formats, strict=True):
            out.append(datetime.strptime(value, fmt) if fmt else value)
        return tuple(out)

    def arrow_types(self) -> tuple[pa.DataType, ...]:
        return tuple(TEXT_DATETIME if f else pa.string() for f in self.date_formats)


def _date_layout(layout: str) -> tuple[str, str]:
    regex, fmt, i = "", "", 0
    while i < len(layout):
        token = next((t for t in _DATE_TOKENS if layout.startswith(t, i)), None)
        if token is None:
            regex += re.escape(layout[i])
            fmt += layout[i].replace("%", "%%")
            i += 1
        else:
            regex += _DATE_TOKENS[token][0]
            fmt += _DATE_TOKENS[token][1]
            i += len(token)
    return regex, fmt


@dataclass(frozen=True)
class PartitionColumns(Step):
    format: PartitionFormat
    ignore_error: bool = False


class Finisher:
    """Raw table of one file -> the MLTable's final table (see the module docstring).

    ``partition_values[k][f]`` holds the values of the k-th partition step's columns for
    file f (computed once by the planner). Plain data: inherited by forked workers.
    """

    def __init__(
        self,
        steps: tuple[Step, ...],
        include_path: bool,
        partition_values: dict[int, list[tuple[Any, ...] | None]],
    ) -> None:
        self.steps = steps
        self.include_path = include_path
        self.partition_values = partition_values

    def apply(self, table: pa.Table, file: int, path: str) -> pa.Table:
        """Raises ValueError (a conversion failed) or TableInputError (a step is wrong for
        this schema: only from final_schema, as the schema is the same for every file)."""
        if self.include_path:
            table = _add_column(table, 0, PATH_COLUMN, pa.string(), path, Where(""))
        for k, step in enumerate(self.steps):
            if isinstance(step, SelectColumns):
                table = _select(table, step)
            elif isinstance(step, ConvertColumns):
                for conv in step.conversions:
                    for name in conv.columns:
                        i = _column_index(table, name, step.where)
                        table = table.set_column(i, name, conv.apply(table.column(i), name))
            elif isinstance(step, PartitionColumns):
                known = self.partition_values[k][file] if file >= 0 else None
                values = known or (None,) * len(step.format.names)
                kinds = step.format.arrow_types()
                for name, kind, value in zip(step.format.names, kinds, values, strict=True):
                    table = _add_column(table, table.num_columns, name, kind, value, step.where)
        return table

    def final_schema(self, raw: pa.Schema) -> pa.Schema:
        """The schema every mini-batch will have; TableInputError for a wrong step."""
        return self.apply(raw.empty_table(), -1, "").schema


def _column_index(table: pa.Table, name: str, where: Where) -> int:
    i = int(table.schema.get_field_index(name))
    if i < 0:
        columns = ", ".join(table.column_names) or "none"
        raise where.error(
            f"no column '{name}' at this step (columns: {columns})",
            _close_column(name, table.column_names),
        )
    return i


def _close_column(name: str, columns: list[str]) -> str | None:
    from parajob.spec.report import did_you_mean

    return did_you_mean(name, columns)


def _select(table: pa.Table, step: SelectColumns) -> pa.Table:
    for name in step.columns:
        _column_index(table, name, step.where)
    if step.keep:
        return table.select(list(step.columns))
    return table.drop_columns(list(step.columns))


def _add_column(
    table: pa.Table, at: int, name: str, kind: pa.DataType, value: Any, where: Where
) -> pa.Table:
    if name in table.column_names:
        raise where.error(
            f"column '{name}' already exists", "rename the data column, or drop it before this step"
        )
    column = (
        pa.repeat(pa.scalar(value, kind), table.num_rows) if table.num_rows else pa.array([], kind)
    )
    return table.add_column(at, pa.field(name, kind), column)
