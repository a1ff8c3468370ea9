"""The C++ record scanner (_core.scan_delimited / scan_lines) against Arrow's own parsers.

Property: for any CSV / JSON-lines file, the pieces the scanner cuts, each parsed alone by
Arrow, give exactly the rows Arrow reads from the whole file, in order; each piece holds
the number of records the scanner says; no piece is over 2 x target unless one line is;
and any number of threads gives the same pieces as one.
"""

from __future__ import annotations

import io
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.json as pajson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from parajob import _core

PROPERTY = settings(
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


@contextmanager
def data_file(data: bytes) -> Iterator[str]:
    fd, path = tempfile.mkstemp(prefix="parajob-records-")
    try:
        os.write(fd, data)
        os.close(fd)
        yield path
    finally:
        os.unlink(path)


# -- CSV generation ---------------------------------------------------------------------

PLAIN = st.text(alphabet='ab1 .é"\t', max_size=6).filter(lambda s: not s.startswith('"'))


@st.composite
def quoted(draw: st.DrawFn, multi_line: bool) -> str:
    inner = 'ab," é' + ("\n\r" if multi_line else "")
    body = draw(st.text(alphabet=inner, max_size=8)).replace('"', '""')
    after = draw(st.sampled_from(["", "", "", "x"]))  # "a"x reads as ax
    return f'"{body}"{after}'


@dataclass
class Csv:
    data: bytes
    fields: int
    header: bool
    multi_line: bool
    longest_line: int


@st.composite
def csv_files(draw: st.DrawFn) -> Csv:
    multi_line = draw(st.booleans())
    fields = draw(st.integers(1, 4))
    header = draw(st.booleans())
    n = draw(st.integers(0, 40))
    field = st.one_of(PLAIN, quoted(multi_line))
    out, longest = [], 0
    for i in range(n + (1 if header else 0)):
        if i and draw(st.integers(0, 9)) == 0:
            out.append(draw(st.sampled_from(["\n", "\r\n"])))  # an empty line
        row = ",".join(draw(field) for _ in range(fields))
        if fields == 1 and row == "":
            row = '""'  # an empty line would be skipped, not a record
        ending = draw(st.sampled_from(["\n", "\n", "\r\n", "\r"]))
        if ending == "\r" and row.endswith(("\r", "\n")):
            ending = "\n"
        line = row + ending
        longest = max(longest, len(line.encode()))
        out.append(line)
    text = "".join(out)
    if text and draw(st.booleans()):
        text = text.rstrip("\r\n") if not text.rstrip("\r\n").endswith('"') else text
    return Csv(text.encode(), fields, header, multi_line, longest)


def arrow_rows(data: bytes, fields: int, multi_line: bool, header: bool = False) -> list[tuple]:
    """Rows as Arrow reads them (all text); with header, from a whole file."""
    if not data.strip(b"\r\n"):
        return []
    names = [f"c{k}" for k in range(fields)]

    def read(types: dict[str, pa.DataType]) -> pa.Table:
        return pacsv.read_csv(
            io.BytesIO(data),
            read_options=pacsv.ReadOptions(
                column_names=None if header else names, use_threads=False
            ),
            parse_options=pacsv.ParseOptions(newlines_in_values=multi_line),
            convert_options=pacsv.ConvertOptions(
                column_types=types,
                strings_can_be_null=False,
                quoted_strings_can_be_null=False,
            ),
        )

    try:
        # All text, by column name: ConvertOptions(default_column_type=) needs pyarrow 25,
        # and the suite runs on the declared floor too.
        table = read({})
        table = read(dict.fromkeys(table.column_names, pa.string()))
    except pa.ArrowInvalid as exc:  # a header and nothing else, without a line break
        if header and "Empty CSV file" in str(exc):
            return []
        raise
    return list(zip(*(column.to_pylist() for column in table.columns), strict=True))


def scan(path: str, csv: Csv, target: int, **kw: int) -> _core.RecordScan:
    return _core.scan_delimited(
        path, header=csv.header, multi_line=csv.multi_line, target_bytes=target, **kw
    )


@PROPERTY
@given(csv_files(), st.integers(1, 200))
def test_pieces_concatenate_to_the_whole_file(csv: Csv, target: int) -> None:
    with data_file(csv.data) as path:
        result = scan(path, csv, target, threads=1)
        assert result.error is None
        expected = arrow_rows(csv.data, csv.fields, csv.multi_line, csv.header)
        got: list[tuple] = []
        for begin, end, records, _line in result.pieces.tolist():
            rows = arrow_rows(csv.data[begin:end], csv.fields, csv.multi_line)
            assert len(rows) == records
            assert end - begin <= 2 * target or csv.longest_line > target
            got.extend(rows)
        assert got == expected
        assert result.records == len(expected)
        # In order, no overlap; what lies between pieces is only empty lines.
        bounds = [result.data_begin, *result.pieces[:, :2].ravel().tolist(), len(csv.data)]
        for gap_begin, gap_end in zip(bounds[::2], bounds[1::2], strict=True):
            assert gap_begin <= gap_end and not csv.data[gap_begin:gap_end].strip(b"\r\n")


@PROPERTY
@given(csv_files(), st.integers(1, 300), st.integers(2, 5))
def test_threads_cut_exactly_where_one_thread_does(csv: Csv, target: int, threads: int) -> None:
    if csv.multi_line:  # threads only without multi_line
        csv.multi_line = False
        if b'"' in csv.data:
            return
    with data_file(csv.data) as path:
        one = scan(path, csv, target, threads=1)
        many = scan(path, csv, target, threads=threads, thread_bytes=1)
        assert many.pieces.tolist() == one.pieces.tolist()
        assert (many.records, many.error, many.data_begin) == (
            one.records,
            one.error,
            one.data_begin,
        )


def test_a_ragged_row_is_reported_with_its_line_from_any_thread() -> None:
    rows = [f"{i},{i * 2},x\n" for i in range(5000)]
    rows[3210] = "3210,6420\n"
    data = ("a,b,c\r\n" + "".join(rows)).encode()
    with data_file(data) as path:
        for threads in (1, 2, 4):
            result = _core.scan_delimited(
                path, header=True, target_bytes=1000, threads=threads, thread_bytes=1
            )
            kind, line, offset, expected, found = result.error
            assert (kind, line, expected, found) == ("field_count", 3212, 3, 2)
            assert data[offset : offset + 10] == b"3210,6420\n"


def test_a_line_break_in_quotes_needs_multi_line() -> None:
    data = b'a,b\n1,"two\nlines"\n3,4\n'
    with data_file(data) as path:
        assert _core.scan_delimited(path, header=True).error[:2] == ("line_break_in_quotes", 2)
        ok = _core.scan_delimited(path, header=True, multi_line=True)
        assert ok.error is None and ok.records == 2


def test_header_fields_and_sampling() -> None:
    data = b'\n\n"x,1",y\n1,2\n3,4\n5,6'
    with data_file(data) as path:
        result = _core.scan_delimited(path, header=True)
        assert (result.header_begin, result.header_end, result.fields) == (2, 10, 2)
        assert result.pieces.tolist() == [[10, len(data), 3, 4]]
        sample = _core.scan_delimited(path, begin=10, max_records=2)
        assert sample.end == 18 and sample.records == 2


def test_an_empty_file_has_no_pieces() -> None:
    with data_file(b"") as path:
        result = _core.scan_delimited(path, header=True, target_bytes=10)
        assert result.pieces.shape == (0, 4) and result.records == 0 and result.fields == 0
    with data_file(b"h1,h2\r\n") as path:
        result = _core.scan_delimited(path, header=True, target_bytes=10)
        assert result.pieces.shape == (0, 4) and result.fields == 2


def test_io_errors_name_the_path(tmp_path) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(FileNotFoundError, match="missing.csv"):
        _core.scan_delimited(tmp_path / "missing.csv")
    with pytest.raises(IsADirectoryError):
        _core.scan_lines(tmp_path)
    with pytest.raises(ValueError, match="single byte"):
        _core.scan_delimited(tmp_path, delimiter=";;")


# -- JSON lines -------------------------------------------------------------------------

JSON_TEXT = st.text(alphabet='ab\n"\\é {}', max_size=6)


@st.composite
def json_files(draw: st.DrawFn) -> tuple[bytes, int]:
    import json

    lines, longest = [], 0
    for _ in range(draw(st.integers(0, 30))):
        if draw(st.integers(0, 6)) == 0:
            lines.append(draw(st.sampled_from(["\n", "  \n", "\r\n", "\t \n"])))
            continue
        obj = {"a": draw(st.one_of(st.none(), JSON_TEXT)), "b": draw(JSON_TEXT)}
        line = json.dumps(obj, ensure_ascii=draw(st.booleans())) + draw(
            st.sampled_from(["\n", "\r\n", " \n"])
        )
        longest = max(longest, len(line.encode()))
        lines.append(line)
    text = "".join(lines)
    if draw(st.booleans()):
        text = text.rstrip("\n")
    return text.encode(), longest


def json_rows(data: bytes) -> list[dict]:
    if not data.strip():
        return []
    schema = pa.schema([("a", pa.string()), ("b", pa.string())])
    return pajson.read_json(
        io.BytesIO(data),
        read_options=pajson.ReadOptions(use_threads=False),
        parse_options=pajson.ParseOptions(explicit_schema=schema),
    ).to_pylist()


@PROPERTY
@given(json_files(), st.integers(1, 200))
def test_json_lines_pieces_concatenate_to_the_whole_file(
    file: tuple[bytes, int], target: int
) -> None:
    data, longest = file
    with data_file(data) as path:
        result = _core.scan_lines(path, target_bytes=target)
        got: list[dict] = []
        for begin, end, records, line in result.pieces.tolist():
            rows = json_rows(data[begin:end])
            assert len(rows) == records
            assert line == data[:begin].count(b"\n") + 1
            assert end - begin <= 2 * target or longest > target
            got.extend(rows)
        assert got == json_rows(data)
