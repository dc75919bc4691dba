"""Table files for batch scoring: CSV and JSON lines in (rows of a byte range), predictions out.

Reading turns bytes into records (CSV: lists of text cells; JSON lines: objects or lists); choosing a
record's feature values and id is `RowPicker`'s; validating and encoding them is the row validator's,
the same one the API uses. Parquet is read with pyarrow on the training side only (`training.score`).
"""

from __future__ import annotations

import codecs
import csv
import io
import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import IO, Any, Protocol

import numpy as np
import orjson

from lambda_forest.errors import InvalidInput

CSV, JSONL, PARQUET = "csv", "jsonl", "parquet"
FORMATS = (CSV, JSONL, PARQUET)
TEXT_FORMATS = (CSV, JSONL)
EXTENSIONS = {".csv": CSV, ".jsonl": JSONL, ".ndjson": JSONL, ".parquet": PARQUET, ".pq": PARQUET}
COMPRESSED = (".gz", ".bz2", ".zst", ".xz", ".zip", ".snappy")
HEADER_LIMIT_BYTES = 1 << 20
CSV_BLOCK_BYTES = 1 << 20  # CSV text is decoded a block at a time
BOM = b"\xef\xbb\xbf"
DEFAULT_DELIMITER, DEFAULT_ENCODING = ",", "utf-8"
OTHER_DELIMITERS = (";", "\t", "|")  # what a one-column header holds when the file uses another separator
_BYTES_THE_CHUNKS_READ = '"\n\r'  # the planner finds rows by these bytes, so an encoding must keep them ASCII


@dataclass(frozen=True)
class CsvDialect:
    """How a CSV file's text is written: its value separator and its text encoding (`--delimiter`,
    `--encoding`, as for training)."""

    delimiter: str = DEFAULT_DELIMITER
    encoding: str = DEFAULT_ENCODING

    def checked(self) -> CsvDialect:
        """The dialect, or InvalidInput naming what is wrong with it; the encoding by its codec's name."""
        if len(self.delimiter) != 1 or self.delimiter in _BYTES_THE_CHUNKS_READ or self.delimiter.isalnum():
            raise InvalidInput(
                f"The delimiter must be one character other than a quote, a letter, a digit or a line end, "
                f"not {self.delimiter!r}."
            )
        try:
            name = codecs.lookup(self.encoding).name.replace("utf-8-sig", "utf-8")  # a BOM is read either way
        except LookupError:
            raise InvalidInput(f"--encoding {self.encoding!r} is not an encoding Python knows.") from None
        probe = f"{_BYTES_THE_CHUNKS_READ},;|azAZ09 "
        try:
            keeps_ascii = probe.encode(name) == probe.encode("ascii") and not name.startswith(("utf-7", "iso2022"))
        except UnicodeError:
            keeps_ascii = False
        if not keeps_ascii:
            raise InvalidInput(
                f"Batch scoring reads {self.encoding} text in byte ranges, which needs an encoding that keeps "
                "ASCII as it is (UTF-8, Latin-1, Windows-1252, ...); convert the file to UTF-8 first."
            )
        try:
            self.delimiter.encode(name)
        except UnicodeError:
            raise InvalidInput(f"The delimiter {self.delimiter!r} cannot be written in {self.encoding}.") from None
        return CsvDialect(self.delimiter, name)


def other_delimiter(header: list[str], delimiter: str) -> str | None:
    """The separator a header read as one column seems to use instead of `delimiter`, as it is typed on
    the command line (`\\t` for a tab)."""
    if len(header) != 1:
        return None
    other = next((d for d in OTHER_DELIMITERS if d in header[0] and d != delimiter), None)
    return {"\t": "\\t"}.get(other, other) if other else None


def format_of(uri: str, given: str | None = None) -> str:
    """The table format: `given`, else from the file's extension."""
    if given:
        if given not in FORMATS:
            raise InvalidInput(f"Unknown format {given!r}; expected one of {', '.join(FORMATS)}.")
        return given
    name = uri.rstrip("/").rsplit("/", 1)[-1].lower()
    if name.endswith(COMPRESSED):
        raise InvalidInput(
            f"{uri} is compressed; batch scoring reads byte ranges of uncompressed CSV or JSON lines "
            "(or Parquet, which compresses internally): decompress it first."
        )
    for extension, found in EXTENSIONS.items():
        if name.endswith(extension):
            return found
    raise InvalidInput(f"Cannot tell the format of {uri} from its name; pass --format csv, jsonl or parquet.")


@dataclass(frozen=True)
class Header:
    """A CSV file's column names and the offset of its first data byte."""

    columns: list[str]
    data_start: int


def parse_csv_header(head: bytes, at_end_of_file: bool, dialect: CsvDialect = CsvDialect()) -> Header | None:
    """The header from the first bytes of a CSV file; None if `head` does not hold all of it yet."""
    quotes = 0
    for offset, byte in enumerate(head):
        if byte == 34:
            quotes += 1
        elif byte == 10 and quotes % 2 == 0:
            return Header(_header_columns(head[: offset + 1], dialect), offset + 1)
    if at_end_of_file:
        return Header(_header_columns(head, dialect), len(head)) if head.strip() else None
    return None


def _header_columns(line: bytes, dialect: CsvDialect) -> list[str]:
    try:
        text = line.removeprefix(BOM).decode(dialect.encoding)
    except UnicodeDecodeError:
        raise InvalidInput(
            f"The CSV header is not {dialect.encoding.upper()} text; pass its encoding (e.g. --encoding latin-1)."
        ) from None
    columns = next(csv.reader(io.StringIO(text, newline=""), delimiter=dialect.delimiter), [])
    if not columns or not any(columns):
        raise InvalidInput("The CSV file's first line is empty; expected a header row naming the columns.")
    other = other_delimiter(columns, dialect.delimiter)
    if other:
        raise InvalidInput(
            f"The CSV file separates its values with '{other}', not {dialect.delimiter!r}; pass --delimiter '{other}'."
        )
    repeated = sorted({name for name in columns if columns.count(name) > 1})
    if repeated:
        raise InvalidInput(f"The CSV header names column(s) {', '.join(map(repr, repeated[:5]))} more than once.")
    return columns


def read_records(stream: IO[bytes], fmt: str, dialect: CsvDialect = CsvDialect()) -> Iterator[Any]:
    """Records of a byte stream that holds whole rows: CSV cell lists, or parsed JSON values. Blank lines
    are not records; a row that cannot be read (text not in the encoding, a JSON line that does not
    parse) is yielded as `UnreadableLine`, so it fails alone and the rest still score."""
    if fmt == CSV:
        yield from _csv_records(stream, dialect)
        return
    for line in stream:
        if line.strip():
            try:
                yield orjson.loads(line)
            except orjson.JSONDecodeError as error:
                yield UnreadableLine(f"is not valid JSON: {error}")


def _csv_records(stream: IO[bytes], dialect: CsvDialect) -> Iterator[Any]:
    """CSV records, parsed as pandas and the API's CSV bodies parse them (csv's default, lenient quoting).

    A record with bytes that are not in the encoding is reported on its own (`UnreadableLine`, with the
    cells read anyway): csv reads exactly the lines of one record before it yields it, so a line that did
    not decode while it read them belongs to that record.
    """
    problems: list[str] = []
    reader = csv.reader(_csv_lines(stream, dialect.encoding, problems), delimiter=dialect.delimiter)
    while True:
        try:
            cells = next(reader)
        except StopIteration:
            return
        except csv.Error as error:  # csv starts again on the next line
            problems.clear()
            yield UnreadableLine(f"is not valid CSV: {error}")
            continue
        if problems:
            yield UnreadableLine(problems[0], cells)
            problems.clear()
        elif cells:
            yield cells


def _csv_lines(stream: IO[bytes], encoding: str, problems: list[str]) -> Iterator[str]:
    """The stream's lines as text, decoded a block at a time; in a block that does not decode, a line at a
    time, each line that does not decode noted in `problems` (and read with replacement characters)."""
    while block := stream.read(CSV_BLOCK_BYTES):
        block += stream.readline()  # blocks end where lines end
        try:
            text = block.decode(encoding)
        except UnicodeDecodeError:
            for line in block.splitlines(keepends=True):
                try:
                    yield line.decode(encoding)
                except UnicodeDecodeError as error:
                    problems.append(
                        f"is not {encoding.upper()} text (byte 0x{line[error.start]:02x}); save the file as "
                        f"{encoding.upper()}, or pass its encoding (e.g. --encoding latin-1)"
                    )
                    yield line.decode(encoding, errors="replace")
        else:
            yield from io.StringIO(text, newline="")  # splits lines as a file opened with newline="" does


@dataclass(frozen=True)
class UnreadableLine:
    """A row that could not be read, why, and for CSV the cells read anyway (for its id)."""

    reason: str
    cells: list[str] | None = None


@dataclass(frozen=True)
class Picked:
    """A record's id (or None) and its feature values in feature order, or why it has none."""

    id: Any
    values: list[Any] | None
    reason: str | None = None


class RowPicker:
    """Chooses each record's feature values (in the model's order) and id; other columns are ignored."""

    def __init__(self, feature_names: list[str], id_column: str | None, columns: list[str] | None) -> None:
        self.feature_names = feature_names
        self.id_column = id_column
        self.columns = columns
        if columns is not None:  # CSV: positions from the header, checked once, up front
            check_columns(columns, feature_names, id_column)
            position = {name: index for index, name in enumerate(columns)}
            self.positions = [position[name] for name in feature_names]
            self.id_position = position[id_column] if id_column else None

    def pick(self, record: Any) -> Picked:
        if isinstance(record, UnreadableLine):
            return Picked(self._cell_id(record.cells) if record.cells else None, None, record.reason)
        if self.columns is not None:
            row_id = self._cell_id(record)
            if len(record) != len(self.columns):
                return Picked(row_id, None, f"has {len(record)} values; the header names {len(self.columns)} columns")
            return Picked(row_id, [record[position] for position in self.positions])
        if isinstance(record, dict):
            row_id = record.get(self.id_column) if self.id_column else None
            missing = [name for name in self.feature_names if name not in record]
            if missing:
                return Picked(row_id, None, f"is missing feature(s) {', '.join(map(repr, missing[:5]))}")
            return Picked(row_id, [record[name] for name in self.feature_names])
        if isinstance(record, list):
            if self.id_column:
                return Picked(None, None, f"is a JSON array; --id-column {self.id_column!r} needs JSON objects")
            return Picked(None, record)
        return Picked(None, None, "is not a JSON object or array")

    def _cell_id(self, cells: list[str]) -> str | None:
        """A CSV record's id cell, if it has one."""
        return cells[self.id_position] if self.id_position is not None and self.id_position < len(cells) else None


def check_columns(columns: list[str], feature_names: list[str], id_column: str | None) -> None:
    """Refuse a header that lacks a feature or the id column, naming what is missing."""
    missing = [name for name in feature_names if name not in columns]
    if missing:
        raise InvalidInput(
            f"The input has no column(s) {', '.join(map(repr, missing[:5]))}"
            f"{' and more' if len(missing) > 5 else ''}; the model needs {', '.join(map(repr, feature_names[:8]))}"
            f"{', ...' if len(feature_names) > 8 else ''}."
        )
    if id_column and id_column not in columns:
        raise InvalidInput(f"The input has no id column {id_column!r}; its columns are {', '.join(columns[:8])}.")


@dataclass(frozen=True)
class OutputColumns:
    """What each prediction row holds: the row number, the id, the prediction, probabilities, version."""

    id_column: str | None
    classes: list[Any] | None

    @property
    def names(self) -> list[str]:
        names = ["row", *([self.id_column] if self.id_column else []), "prediction"]
        names += [f"probability_{label}" for label in self.classes or []]
        return [*names, "model_version"]


class RowWriter(Protocol):
    """Where a chunk's predictions go: CSV and JSON lines here, Parquet on the training side."""

    def write(
        self,
        rows: list[int],
        ids: list[Any],
        predictions: list[Any],
        probabilities: list[list[float]] | None,
        version: str,
    ) -> None: ...

    def close(self) -> None: ...


class PredictionWriter:
    """Writes prediction rows to a binary file as CSV or JSON lines; floats round-trip exactly."""

    def __init__(self, file: IO[bytes], fmt: str, columns: OutputColumns) -> None:
        if fmt not in TEXT_FORMATS:
            raise ValueError(f"PredictionWriter writes {TEXT_FORMATS}, not {fmt}")
        self.file = file
        self.fmt = fmt
        self.columns = columns
        self.text = io.TextIOWrapper(file, encoding="utf-8", newline="", write_through=True)
        self.csv = csv.writer(self.text, lineterminator="\n") if fmt == CSV else None
        if self.csv:
            self.csv.writerow(columns.names)

    def write(
        self,
        rows: list[int],
        ids: list[Any],
        predictions: list[Any],
        probabilities: list[list[float]] | None,
        version: str,
    ) -> None:
        if self.csv is not None:
            # str(float) is Python's shortest round-trip repr: parsing it back gives the same float64.
            for index, row in enumerate(rows):
                values = [row, *([ids[index]] if self.columns.id_column else []), predictions[index]]
                self.csv.writerow([*values, *(probabilities[index] if probabilities else ()), version])
            return
        classes = self.columns.classes
        for index, row in enumerate(rows):
            record: dict[str, Any] = {"row": row}
            if self.columns.id_column:
                record["id"] = ids[index]
            record["prediction"] = predictions[index]
            if probabilities and classes:
                record["probabilities"] = dict(zip(map(str, classes), probabilities[index], strict=True))
            record["model_version"] = version
            self.text.write(orjson.dumps(record, option=orjson.OPT_SERIALIZE_NUMPY).decode() + "\n")

    def close(self) -> None:
        self.text.flush()
        self.text.detach()


def error_line(row: int, row_id: Any, reason: str, code: str) -> bytes:
    """One line of an errors file: the row, its id, why it was not scored."""
    record = {"row": row, "id": row_id, "code": code, "reason": reason}
    return json.dumps(record, default=_plain, ensure_ascii=False).encode() + b"\n"


def _plain(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    return str(value)
