"""``read_json_lines`` tables: pieces cut at line ends by the C++ scanner, read by Arrow.

Types are inferred from the first 200 records of the first file with data, settled by
dtypes.py (text stays text, as in mltable) and then fixed (``explicit_schema``): every
mini-batch has the same columns; a field that appears only later is ignored, a value
that does not fit its column is an error naming the line.
``invalid_lines: drop`` re-reads a piece that Arrow rejects line by line and keeps the
lines that are JSON objects. Non-UTF-8 encodings are transcoded when read; utf16/utf32
files are one piece each (their bytes cannot be cut at a '\\n' byte).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.json as pajson

from parajob import _core
from parajob.data import dtypes
from parajob.data.delimited import BOM, SAMPLE_ROWS, _pread
from parajob.data.input_errors import Where
from parajob.data.mltable_paths import DataFile

__all__ = ["JsonLinesSource"]

_CODECS = {
    "utf8": "utf-8",
    "utf8bom": "utf-8-sig",
    "ascii": "ascii",
    "latin1": "latin-1",
    "cp1252": "cp1252",
    "utf16": "utf-16",
    "utf32": "utf-32",
}


@dataclass
class JsonLinesSource:
    files: list[DataFile]
    options: dict[str, Any]
    where: Where
    string_columns: frozenset[str] = frozenset()
    schema: pa.Schema = field(default_factory=lambda: pa.schema([]))

    @property
    def exact_records(self) -> bool:
        """Records per piece are exact unless invalid lines may be dropped."""
        return self.options["invalid_lines"] == "error" and self._splittable

    @property
    def _splittable(self) -> bool:
        return self.options["encoding"] not in ("utf16", "utf32")

    def plan(self, target_bytes: int) -> np.ndarray:
        """(n, 5) uint64 pieces [file, begin, end, records, first_line]."""
        parts: list[np.ndarray] = []
        for i, f in enumerate(self.files):
            if not self._splittable:
                size = os.path.getsize(f.path)
                if size:
                    parts.append(np.array([[i, 0, size, 0, 1]], np.uint64))
                continue
            begin = len(BOM) if _pread_upto(f.path, 3) == BOM else 0
            p = _core.scan_lines(f.path, begin=begin, target_bytes=target_bytes).pieces
            parts.append(np.column_stack([np.full(len(p), i, np.uint64), p]))
        pieces = np.concatenate(parts) if parts else np.zeros((0, 5), np.uint64)
        self.schema = self._infer(pieces)
        return pieces

    def _infer(self, pieces: np.ndarray) -> pa.Schema:
        if len(pieces) == 0:
            return pa.schema([])
        f, begin = int(pieces[0, 0]), int(pieces[0, 1])
        path = self.files[f].path
        if self._splittable:
            end = _core.scan_lines(path, begin=begin, max_records=SAMPLE_ROWS).end
        else:
            end = int(pieces[0, 2])
        table = self._parse(_pread(path, end - begin, begin), None, path, int(pieces[0, 4]))
        fields = [
            pa.field(n, pa.string() if n in self.string_columns else dtypes.settle_json(t))
            for n, t in zip(table.column_names, table.schema.types, strict=True)
        ]
        return pa.schema(fields)

    def read(self, f: int, begin: int, end: int, first_line: int) -> pa.Table:
        path = self.files[f].path
        return self._parse(_pread(path, end - begin, begin), self.schema, path, first_line)

    def describe(self, f: int, begin: int, end: int, records: int, first_line: int) -> str:
        return f"{self.files[f].path}: bytes {begin}-{end}, from line {first_line}, {records} lines"

    def _parse(self, data: bytes, schema: pa.Schema | None, path: str, first_line: int) -> pa.Table:
        codec = _CODECS[self.options["encoding"]]
        if codec not in ("utf-8", "ascii"):
            data = data.decode(codec).encode("utf-8")
        parse = (
            pajson.ParseOptions(explicit_schema=schema, unexpected_field_behavior="ignore")
            if schema is not None
            else pajson.ParseOptions()
        )
        options = pajson.ReadOptions(use_threads=False, block_size=max(1 << 20, len(data) + 1))
        try:
            return pajson.read_json(pa.py_buffer(data), read_options=options, parse_options=parse)
        except pa.ArrowInvalid as exc:
            if self.options["invalid_lines"] == "drop":
                kept = b"\n".join(line for line in data.split(b"\n") if _is_object(line))
                if not kept:
                    return (schema or pa.schema([])).empty_table()
                return pajson.read_json(
                    pa.py_buffer(kept), read_options=options, parse_options=parse
                )
            line = first_line + _first_bad_line(data)
            raise ValueError(
                f"{path}:{line}: {exc} (set invalid_lines: drop under "
                "read_json_lines to skip lines that are not JSON objects)"
            ) from None


def _is_object(line: bytes) -> bool:
    try:
        return isinstance(json.loads(line), dict)
    except ValueError:
        return False


def _first_bad_line(data: bytes) -> int:
    for k, line in enumerate(data.split(b"\n")):
        if line.strip() and not _is_object(line):
            return k
    return 0


def _pread_upto(path: str, size: int) -> bytes:
    with open(path, "rb") as f:
        return f.read(size)
