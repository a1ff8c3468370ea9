"""``read_delimited`` tables: plan pieces with the C++ scanner, read them with Arrow.

Planning (driver, before fork; reads no data into Python beyond headers and a sample):

    per file:  _core.scan_delimited  -> header bytes, record pieces, first bad record
    headers:   parsed once per file with Arrow; "all_files_same_headers" checked equal
    types:     inferred by Arrow from the first 200 data rows of the table (the sample
               runs on into the next files), settled by dtypes.py, then fixed: every
               piece is read with the same column types

Reading (worker): the piece's bytes with one pread, parsed by Arrow with the fixed
column names and types, so a piece never re-reads or re-parses the header, and every
mini-batch gets the same schema. utf16/utf32 files cannot be cut on bytes: each is one
piece, transcoded and parsed (header included) by Arrow when read.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv

from parajob import _core
from parajob.data import dtypes
from parajob.data.input_errors import TableInputError, Where
from parajob.data.mltable_paths import DataFile

__all__ = ["DelimitedSource", "SAMPLE_ROWS"]

SAMPLE_ROWS = 200  # rows used to infer column types (as Azure's read_delimited does)
MAX_PROBLEMS = 10  # data problems reported at once
BOM = b"\xef\xbb\xbf"
_CODECS = {
    "utf8": "utf8",
    "utf8bom": "utf8",
    "ascii": "ascii",
    "latin1": "latin1",
    "cp1252": "cp1252",
    "utf16": "utf-16",
    "utf32": "utf-32",
}


@dataclass
class DelimitedSource:
    """The files of a read_delimited table; see the module docstring.

    Attributes set by :meth:`plan` and read by workers (inherited through fork):
    ``schema`` (the raw columns), ``names[f]`` (column names of file f, in file order).
    """

    files: list[DataFile]
    options: dict[str, Any]
    where: Where
    string_columns: frozenset[str] = frozenset()  # read as text (a conversion follows)
    exact_records: bool = True
    schema: pa.Schema = field(default_factory=lambda: pa.schema([]))
    names: list[tuple[str, ...]] = field(default_factory=list)
    _starts: list[int] = field(default_factory=list)  # first data byte per file (after BOM)

    @property
    def splittable(self) -> bool:
        return self.options["encoding"] not in ("utf16", "utf32")

    # -- planning -----------------------------------------------------------------------
    def plan(self, target_bytes: int) -> np.ndarray:
        """(n, 5) uint64 pieces [file, begin, end, records, first_line]; 0: whole files.

        Raises TableInputError naming the file and line of each bad record.
        """
        if not self.splittable:
            return self._plan_whole_files()
        mode = self.options["header"]
        problems: list[Any] = []
        pieces: list[np.ndarray] = []
        headers: dict[bytes, tuple[str, ...]] = {}
        first_header: tuple[tuple[str, ...], str] | None = None
        expected = 0
        for i, f in enumerate(self.files):
            begin = self._bom(f.path)
            header = mode in ("all_files_same_headers", "all_files_different_headers") or (
                mode == "from_first_file" and first_header is None
            )
            scan = _core.scan_delimited(
                f.path,
                delimiter=self.options["delimiter"],
                multi_line=self.options["support_multi_line"],
                begin=begin,
                header=header,
                expected_fields=0 if mode == "all_files_different_headers" else expected,
                target_bytes=target_bytes,
                threads=0,
            )
            self._starts.append(begin)
            names: tuple[str, ...] = ()
            if header and scan.header_end > scan.header_begin:
                raw = _pread(f.path, scan.header_end - scan.header_begin, scan.header_begin)
                if raw not in headers:
                    headers[raw] = self._parse_header(raw)
                names = headers[raw]
                if first_header is None:
                    first_header = (names, f.path)
                elif mode == "all_files_same_headers" and names != first_header[0]:
                    problems.append(
                        Where(f.path, _line_at(f.path, scan.header_begin)).diagnostic(
                            f"the header differs from the first file's ({first_header[1]})",
                            "use header: all_files_different_headers, or make the headers equal",
                        )
                    )
            elif mode == "no_header" and scan.fields and not expected:
                names = tuple(f"Column{k + 1}" for k in range(scan.fields))
            if not expected and scan.fields and mode != "all_files_different_headers":
                expected = scan.fields
            self.names.append(names)
            if scan.error is not None:
                problems.append(self._problem(f, scan.error, header))
                if len(problems) >= MAX_PROBLEMS:
                    break
                continue
            p = scan.pieces
            pieces.append(np.column_stack([np.full(len(p), i, np.uint64), p]))
        if problems:
            raise TableInputError(problems)
        self._fill_names()
        self.schema = self._infer(np.concatenate(pieces) if pieces else None)
        return np.concatenate(pieces) if pieces else np.zeros((0, 5), np.uint64)

    def _bom(self, path: str) -> int:
        if self.options["encoding"] not in ("utf8", "utf8bom"):
            return 0
        # exact=False: a file of 0-2 bytes holds no BOM (and is not a file that changed)
        return len(BOM) if _pread(path, len(BOM), 0, exact=False) == BOM else 0

    def _fill_names(self) -> None:
        """Files without names of their own (no header line): the shared names."""
        shared = next((n for n in self.names if n), ())
        self.names = [n or shared for n in self.names]

    def _parse_header(self, raw: bytes) -> tuple[str, ...]:
        if not raw.endswith((b"\n", b"\r")):  # the last line of the file: Arrow needs an end
            raw += b"\n"

        def parse(types: dict[str, pa.DataType]) -> pa.Table:
            return pacsv.read_csv(
                pa.py_buffer(raw),
                read_options=self._read_options(None),
                parse_options=self._parse_options(),
                convert_options=pacsv.ConvertOptions(column_types=types, strings_can_be_null=False),
            )

        # Every header value as text, so "1.50" or "TRUE" stay as written: column types by
        # name (f0, f1, ... as autogenerated), counted by a first parse, since
        # ConvertOptions(default_column_type=) is new in pyarrow 25 (the floor is older).
        # One header line per file, at planning: the second parse costs nothing.
        width = parse({}).num_columns
        table = parse({f"f{k}": pa.string() for k in range(width)})
        values = (
            [str(v) if v is not None else "" for v in table.to_pylist()[0].values()]
            if table.num_rows
            else table.column_names
        )
        names: list[str] = []
        for k, v in enumerate(values):
            name = v or f"Column{k + 1}"
            base, n = name, 0
            while name in names:  # duplicates get .1, .2 as pandas.read_csv names them
                n += 1
                name = f"{base}.{n}"
            names.append(name)
        return tuple(names)

    def _problem(self, f: DataFile, error: tuple[str, int, int, int, int], header: bool) -> Any:
        kind, line, _offset, want, found = error
        where = Where(f.path, int(line))
        if kind == "line_break_in_quotes":
            return where.diagnostic(
                "a quoted value goes on past the end of its line",
                "set support_multi_line: true under read_delimited if values hold line "
                "breaks; otherwise close the quote",
            )
        source = "the header" if header else "the first row"
        return where.diagnostic(
            f"ragged row: expected {want} fields (as in {source}), found {found}",
            f"every row needs {want} values separated by "
            f"'{self.options['delimiter']}'; quote values that contain it",
        )

    def _infer(self, pieces: np.ndarray | None) -> pa.Schema:
        """Column types, fixed for every piece: inferred from the first SAMPLE_ROWS rows of
        the table (of each distinct header), the sample running on into the next files as
        mltable's does; columns no sample covers are text. The rules are dtypes.py's."""
        samples: dict[tuple[str, ...], list[bytes]] = {}
        left: dict[tuple[str, ...], int] = {}
        seen_files: set[int] = set()
        for row in pieces if pieces is not None else []:
            f = int(row[0])
            names = self.names[f]
            if f in seen_files or left.get(names, SAMPLE_ROWS) <= 0:
                continue
            seen_files.add(f)
            data, records = self._sample(f, int(row[1]), left.get(names, SAMPLE_ROWS))
            samples.setdefault(names, []).append(data)
            left[names] = left.get(names, SAMPLE_ROWS) - records
        columns: dict[str, pa.DataType] = {}
        for names, parts in samples.items():
            for name, kind in self._sample_types(names, b"".join(parts)).items():
                columns.setdefault(name, kind)
        ordered = list(dict.fromkeys(n for names in self.names for n in names))
        return pa.schema([(n, columns.get(n, pa.string())) for n in ordered])

    def _sample(self, f: int, begin: int, max_records: int) -> tuple[bytes, int]:
        """Up to max_records data records of file f from byte begin, ending in a line end."""
        path = self.files[f].path
        scan = _core.scan_delimited(
            path,
            delimiter=self.options["delimiter"],
            multi_line=self.options["support_multi_line"],
            begin=begin,
            check_fields=False,
            max_records=max_records,
        )
        data = _pread(path, scan.end - begin, begin)
        if data and not data.endswith((b"\n", b"\r")):  # the file's last line: join safely
            data += b"\n"
        return data, int(scan.records)

    def _sample_types(self, names: tuple[str, ...], sample: bytes) -> dict[str, pa.DataType]:
        if not self.options["infer_column_types"]:
            return {n: pa.string() for n in names}
        fixed = {n: pa.string() for n in names if n in self.string_columns}
        table = self._read_sample(names, sample, fixed)
        flags = dtypes.zero_one_columns(table)
        if flags:  # 0/1 columns are booleans (Arrow's bool parser reads 0 and 1)
            try:
                table = self._read_sample(
                    names, sample, {**fixed, **dict.fromkeys(flags, pa.bool_())}
                )
            except pa.ArrowInvalid:  # e.g. "01": not a boolean after all, keep the integers
                pass
        return {fld.name: dtypes.settle_delimited(fld.type) for fld in table.schema}

    def _read_sample(
        self, names: tuple[str, ...], sample: bytes, types: dict[str, pa.DataType]
    ) -> pa.Table:
        return pacsv.read_csv(
            pa.py_buffer(sample),
            read_options=self._read_options(names),
            parse_options=self._parse_options(),
            convert_options=self._convert_options(types),
        )

    def _plan_whole_files(self) -> np.ndarray:
        """utf16/utf32: one piece per file; names and types from the first file, by Arrow."""
        self.exact_records = False
        mode = self.options["header"]
        first = self.files[0].path if self.files else None
        names: tuple[str, ...] = ()
        if first is not None:
            sample = pacsv.read_csv(
                first,
                read_options=pacsv.ReadOptions(
                    use_threads=False,
                    encoding=_CODECS[self.options["encoding"]],
                    autogenerate_column_names=mode == "no_header",
                ),
                parse_options=self._parse_options(),
                convert_options=self._convert_options({}),
            )
            names = (
                tuple(sample.column_names)
                if mode != "no_header"
                else tuple(f"Column{k + 1}" for k in range(sample.num_columns))
            )
            types = {
                n: dtypes.settle_delimited(t)
                for n, t in zip(names, sample.schema.types, strict=True)
            }
            # 0/1 columns are booleans, as in _sample_types (the sample is the whole file).
            types.update(dict.fromkeys(dtypes.zero_one_columns(sample), pa.bool_()))
            if not self.options["infer_column_types"]:
                types = {n: pa.string() for n in names}
            types.update({n: pa.string() for n in names if n in self.string_columns})
            self.schema = pa.schema([(n, types[n]) for n in names])
        self.names = [names] * len(self.files)
        self._starts = [0] * len(self.files)
        sizes = [os.path.getsize(f.path) for f in self.files]
        rows = [(i, 0, s, 0, 1) for i, s in enumerate(sizes) if s > 0]
        return np.array(rows, np.uint64).reshape(-1, 5)

    # -- reading (workers) ----------------------------------------------------------------
    def read(self, f: int, begin: int, end: int, first_line: int) -> pa.Table:
        """The piece's rows with the raw schema; ValueError says which file and lines."""
        path = self.files[f].path
        names = self.names[f]
        try:
            if self.splittable:
                data = pa.py_buffer(_pread(path, end - begin, begin))
                header_rows = 0
            else:
                data = path
                header_rows = (
                    0
                    if self.options["header"] == "no_header"
                    or (self.options["header"] == "from_first_file" and f != 0)
                    else 1
                )
            read_options = self._read_options(names)
            read_options.skip_rows = header_rows
            return pacsv.read_csv(
                data,
                read_options=read_options,
                parse_options=self._parse_options(),
                convert_options=self._convert_options(
                    {fld.name: fld.type for fld in self.schema}, include=True
                ),
            )
        except (pa.ArrowInvalid, UnicodeDecodeError) as exc:
            hint = ""
            if "conversion error" in str(exc) and self.options["infer_column_types"]:
                hint = (
                    f" (column types were inferred from the first {SAMPLE_ROWS} rows; "
                    "name the column in convert_column_types, or set "
                    "infer_column_types: false)"
                )
            raise ValueError(
                f"{path}: rows from line {first_line} (bytes {begin}-{end}): {exc}{hint}"
            ) from None

    def describe(self, f: int, begin: int, end: int, records: int, first_line: int) -> str:
        rows = f", {records} rows" if self.exact_records else ""
        return f"{self.files[f].path}: bytes {begin}-{end}, from line {first_line}{rows}"

    def _read_options(self, names: tuple[str, ...] | None) -> pacsv.ReadOptions:
        return pacsv.ReadOptions(
            use_threads=False,
            encoding=_CODECS[self.options["encoding"]],
            column_names=list(names) if names is not None else None,
            autogenerate_column_names=names is None,
        )

    def _parse_options(self) -> pacsv.ParseOptions:
        return pacsv.ParseOptions(
            delimiter=self.options["delimiter"],
            quote_char='"',
            double_quote=True,
            newlines_in_values=self.options["support_multi_line"],
            ignore_empty_lines=True,
        )

    def _convert_options(
        self, types: dict[str, pa.DataType], include: bool = False
    ) -> pacsv.ConvertOptions:
        as_text = self.options["empty_as_string"]
        return pacsv.ConvertOptions(
            column_types=types,
            # empty_as_string: an empty cell is text, never a missing number (as in mltable,
            # a column with one in the sample is inferred as text).
            null_values=[] if as_text else [""],
            strings_can_be_null=not as_text,
            quoted_strings_can_be_null=not as_text,
            include_columns=list(types) if include else None,
            include_missing_columns=include,
        )


def _line_at(path: str, offset: int) -> int:
    """1-based line of the byte at offset (CRLF, LF and CR each end a line)."""
    head = _pread(path, offset, 0)
    return 1 + head.count(b"\n") + head.count(b"\r") - head.count(b"\r\n")


def _pread(path: str, size: int, offset: int, exact: bool = True) -> bytes:
    """Bytes [offset, offset + size) of path: one open, one pread (no seek, no buffer).
    ``exact``: fewer bytes than asked for means the file changed since it was planned
    (OSError); otherwise a short read is returned as it is (the file is smaller)."""
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        data = os.pread(fd, size, offset)
    finally:
        os.close(fd)
    if exact and len(data) != size:
        raise OSError(
            f"{path}: file changed while it was read (wanted {size} bytes at "
            f"{offset}, got {len(data)})"
        )
    return data
