"""The planner's chunks: every row exactly once, in order, on random files and chunk sizes."""

from __future__ import annotations

import csv
import io
import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lambda_forest.chunks import Chunk, index_chunks, nominal_ranges, scan_range, scan_window
from lambda_forest.errors import InvalidInput
from lambda_forest.table_files import parse_csv_header

# Text that makes CSV quoting work hard: delimiters, quotes, both newline kinds, non-ASCII.
FIELD = st.lists(st.sampled_from(["a", "7", " ", ",", '"', "\n", "\r\n", "é", "\t"]), max_size=8).map("".join)
ROW = st.lists(FIELD, min_size=1, max_size=4)


def plan(data: bytes, chunk_bytes: int, data_start: int, quoted: bool) -> list[Chunk]:
    """The planner's steps as the state machine runs them: ranges, a scan of each, the index."""
    scans = []
    for byte_range in nominal_ranges(len(data), data_start, chunk_bytes):
        window = scan_window(byte_range)
        scans.append(scan_range(data[window.start : window.end], byte_range, quoted))
    return index_chunks(scans, len(data))


def csv_rows(data: bytes) -> list[list[str]]:
    return [row for row in csv.reader(io.StringIO(data.decode(), newline="")) if row]


def assert_chunks_cover(chunks: list[Chunk], data: bytes, data_start: int, parse: object) -> list[object]:
    rows: list[object] = []
    position, first_row = data_start, 0
    for index, chunk in enumerate(chunks):
        assert chunk.index == index
        assert chunk.start == position if index else chunk.start >= data_start
        assert chunk.first_row == first_row
        assert all(byte in b" \r\n" for byte in data[position : chunk.start])  # only blank lines skipped
        in_chunk = parse(data[chunk.start : chunk.end])  # type: ignore[operator]
        assert len(in_chunk) == chunk.rows > 0
        rows += in_chunk
        position, first_row = chunk.end, first_row + chunk.rows
    assert position == len(data) or not chunks
    return rows


@settings(max_examples=150, deadline=None)
@given(
    rows=st.lists(ROW, max_size=25),
    terminator=st.sampled_from(["\n", "\r\n"]),
    blank_lines=st.lists(st.integers(0, 30), max_size=3),
    trailing_newline=st.booleans(),
    chunk_bytes=st.integers(1, 200),
)
def test_csv_chunks_hold_every_row_once_in_order(
    rows: list[list[str]], terminator: str, blank_lines: list[int], trailing_newline: bool, chunk_bytes: int
) -> None:
    buffer = io.StringIO(newline="")
    writer = csv.writer(buffer, lineterminator=terminator)
    writer.writerow(["id", "value"])
    lines = []
    for row in rows:
        line = io.StringIO(newline="")
        csv.writer(line, lineterminator=terminator).writerow(row)
        lines.append(line.getvalue())
    for position in blank_lines:
        lines.insert(min(position, len(lines)), terminator)
    text = buffer.getvalue() + "".join(lines)
    if not trailing_newline:
        text = text.removesuffix(terminator)
    data = text.encode()
    header = parse_csv_header(data, at_end_of_file=True)
    assert header is not None and header.columns == ["id", "value"]

    chunks = plan(data, chunk_bytes, header.data_start, quoted=True)

    expected = csv_rows(data[header.data_start :])
    assert assert_chunks_cover(chunks, data, header.data_start, csv_rows) == expected
    assert sum(chunk.rows for chunk in chunks) == len(expected)


@settings(max_examples=100, deadline=None)
@given(
    records=st.lists(st.dictionaries(st.sampled_from(["a", "b"]), FIELD | st.floats(allow_nan=False)), max_size=20),
    chunk_bytes=st.integers(1, 150),
)
def test_json_lines_chunks_hold_every_line_once_in_order(records: list[dict[str, object]], chunk_bytes: int) -> None:
    data = "".join(json.dumps(record) + "\n" for record in records).encode()

    def parse(part: bytes) -> list[object]:
        return [json.loads(line) for line in part.splitlines() if line.strip()]

    chunks = plan(data, chunk_bytes, 0, quoted=False)

    assert assert_chunks_cover(chunks, data, 0, parse) == records


def test_a_quoted_newline_is_part_of_its_row_whichever_chunk_it_falls_in() -> None:
    data = b'id,text\n1,"first line\nsecond line"\n2,plain\n'
    for chunk_bytes in range(1, len(data)):
        chunks = plan(data, chunk_bytes, 8, quoted=True)
        assert [row for chunk in chunks for row in csv_rows(data[chunk.start : chunk.end])] == [
            ["1", "first line\nsecond line"],
            ["2", "plain"],
        ]


@pytest.mark.parametrize("data", [b'id,text\n1,"never closed\n2,x\n', b'id,text\n1,5" screen\n2,x\n'])
def test_quotes_that_do_not_pair_up_are_refused_before_scoring(data: bytes) -> None:
    with pytest.raises(InvalidInput, match="quote characters do not pair up"):
        plan(data, 7, 8, quoted=True)


def test_a_row_longer_than_a_chunk_spans_ranges_and_stays_whole() -> None:
    data = b"id,text\n1," + b"x" * 100 + b"\n2,y\n"
    chunks = plan(data, 10, 8, quoted=True)
    assert [(chunk.first_row, chunk.rows) for chunk in chunks] == [(0, 1), (1, 1)]
    assert data[chunks[0].start : chunks[0].end] == b"1," + b"x" * 100 + b"\n"


def test_header_only_and_header_without_newline() -> None:
    assert plan(b"id,value\n", 4, 9, quoted=True) == []
    header = parse_csv_header(b"id,value", at_end_of_file=True)
    assert header is not None and header.data_start == 8
    assert parse_csv_header(b'"multi\nline",b', at_end_of_file=False) is None
