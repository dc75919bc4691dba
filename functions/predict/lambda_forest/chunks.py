"""Splitting a text table (CSV or JSON lines) into chunks of whole rows, without one reader seeing all of it.

A row belongs to the byte range in which it starts. Three steps, each one Lambda invocation's worth of
work on a file of any size:

1. `nominal_ranges`: equal byte ranges over the data (after the header); only the size is needed.
2. `scan_range`: one range's bytes. In CSV a newline inside a quoted field is not a row boundary, and a
   range cannot know whether it starts inside quotes, so it is scanned under both hypotheses: where its
   first row starts and how many rows start in it, if it starts outside quotes and if it starts inside.
3. `index_chunks`: the ranges chained from the first (which starts outside quotes, right after the
   header): each range's real hypothesis follows from the quote parity of the ranges before it. The
   result is exact row-aligned byte ranges and the number of the first row of each.

JSON lines need no hypotheses: a JSON string never holds a raw newline, so every newline ends a row.
Blank lines are not rows. A file whose quote characters do not pair up (an unterminated quoted field, or
quotes inside unquoted fields) is refused when it is indexed, before anything is scored.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from itertools import pairwise

import numpy as np

from lambda_forest.errors import InvalidInput

NEWLINE, CARRIAGE_RETURN, QUOTE = 10, 13, 34


@dataclass(frozen=True)
class ByteRange:
    start: int
    end: int


@dataclass(frozen=True)
class RowStarts:
    """Rows starting in a range under one hypothesis: the first one's offset (None if none) and how many."""

    first: int | None
    count: int


@dataclass(frozen=True)
class Scan:
    """One range scanned: row starts if it begins outside quotes (`outside`) and inside (`inside`), and
    the parity of quote characters from the byte before the range up to (not including) its last byte."""

    start: int
    end: int
    outside: RowStarts
    inside: RowStarts
    quote_parity: int
    ends_with_quote: bool

    def to_dict(self) -> dict[str, object]:
        return asdict(self)

    @classmethod
    def from_dict(cls, body: dict[str, object]) -> Scan:
        return cls(
            start=int(body["start"]),  # type: ignore[arg-type]
            end=int(body["end"]),  # type: ignore[arg-type]
            outside=RowStarts(**body["outside"]),  # type: ignore[arg-type]
            inside=RowStarts(**body["inside"]),  # type: ignore[arg-type]
            quote_parity=int(body["quote_parity"]),  # type: ignore[arg-type]
            ends_with_quote=bool(body["ends_with_quote"]),
        )


@dataclass(frozen=True)
class Chunk:
    """Whole rows: bytes [start, end) of the input hold rows first_row .. first_row + rows - 1."""

    index: int
    start: int
    end: int
    first_row: int
    rows: int

    def to_dict(self) -> dict[str, int]:
        return asdict(self)

    @classmethod
    def from_dict(cls, body: dict[str, int]) -> Chunk:
        return cls(**{key: int(body[key]) for key in ("index", "start", "end", "first_row", "rows")})


def nominal_ranges(size: int, data_start: int, chunk_bytes: int) -> list[ByteRange]:
    """Equal ranges (the last one shorter) covering bytes [data_start, size)."""
    if chunk_bytes < 1:
        raise ValueError("chunk_bytes must be positive")
    return [ByteRange(start, min(start + chunk_bytes, size)) for start in range(data_start, size, chunk_bytes)]


def scan_window(byte_range: ByteRange) -> ByteRange:
    """The bytes `scan_range` needs: the range and the byte before it (is its first byte a row start?)."""
    return ByteRange(max(byte_range.start - 1, 0), byte_range.end)


def scan_range(window: bytes, byte_range: ByteRange, quoted: bool) -> Scan:
    """Scan the bytes of `scan_window(byte_range)`. `quoted`: CSV (quotes matter) rather than JSON lines."""
    data = np.frombuffer(window, dtype=np.uint8)
    if byte_range.start == 0:  # the file's first byte starts a row (JSON lines: there is no header)
        data = np.concatenate(([NEWLINE], data)).astype(np.uint8)
    expected = byte_range.end - byte_range.start + 1
    if data.size != expected:
        raise ValueError(f"scan window holds {data.size} bytes; expected {expected}")
    # A row starts at window offset k + 1 when byte k is a newline outside quotes and byte k + 1 does not
    # end the line at once (a blank line is not a row). Window offset 0 is the byte before the range.
    newlines = np.flatnonzero(data[:-1] == NEWLINE)
    following = data[newlines + 1]
    newlines = newlines[(following != NEWLINE) & (following != CARRIAGE_RETURN)]
    offset = byte_range.start - 1
    if not quoted:
        starts = RowStarts(_first(newlines, offset), int(newlines.size))
        return Scan(byte_range.start, byte_range.end, starts, starts, 0, False)
    quotes = np.flatnonzero(data[:-1] == QUOTE)
    # The parity of quotes before each newline, counted from the window's start.
    parity = np.searchsorted(quotes, newlines) & 1
    outside, inside = newlines[parity == 0], newlines[parity == 1]
    return Scan(
        byte_range.start,
        byte_range.end,
        RowStarts(_first(outside, offset), int(outside.size)),
        RowStarts(_first(inside, offset), int(inside.size)),
        int(quotes.size & 1),
        bool(data[-1] == QUOTE),
    )


def _first(newlines: np.ndarray, offset: int) -> int | None:
    return int(newlines[0]) + 1 + offset if newlines.size else None


def index_chunks(scans: list[Scan], size: int) -> list[Chunk]:
    """Chain the scans of consecutive ranges (in order, covering the data to `size`) into exact chunks.

    Ranges in which no row starts (inside a very long row) are dropped; every other range becomes a
    chunk from its first row's start to the next chunk's start.
    """
    for before, after in pairwise(scans):
        if before.end != after.start:
            raise ValueError(f"scans are not consecutive: {before.end} != {after.start}")
    inside = 0  # the first range starts right after the header's newline, outside quotes
    starts: list[tuple[int, int]] = []
    for scan in scans:
        rows = scan.inside if inside else scan.outside
        if rows.count:
            assert rows.first is not None
            starts.append((rows.first, rows.count))
        inside ^= scan.quote_parity
    if scans and inside ^ scans[-1].ends_with_quote:
        raise InvalidInput(
            "The CSV file's quote characters do not pair up (an unterminated quoted field, or a quote inside "
            'an unquoted field); quote whole fields and double the quotes inside them ("a ""b"" c").'
        )
    chunks, first_row = [], 0
    for index, (start, rows) in enumerate(starts):
        end = starts[index + 1][0] if index + 1 < len(starts) else size
        chunks.append(Chunk(index, start, end, first_row, rows))
        first_row += rows
    return chunks
