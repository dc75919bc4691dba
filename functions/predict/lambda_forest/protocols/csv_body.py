"""`text/csv` request bodies (on `/predict` and `/invocations`): one row per line, cells as text.

The header line is optional: a first line that names features is a header (then it must name every
feature once, in any order); any other first line is data, in `feature_names` order. Blank lines are
skipped. Cells are text, read by THE validator in its text mode (`lambda_forest.features`): numbers
parse, pandas' missing-value tokens and empty cells are missing. Messages name rows by their line.
"""

from __future__ import annotations

import csv
from collections.abc import Sequence

from lambda_forest.errors import InvalidCsv, InvalidInstances, TooManyInstances
from lambda_forest.features import names_shown, quote
from lambda_forest.schema import PredictRequest

MEDIA_TYPE = "text/csv"


def is_csv(content_type: str | None) -> bool:
    return bool(content_type) and content_type.split(";", 1)[0].strip().lower() == MEDIA_TYPE


def parse(body: str | None, feature_names: Sequence[str], max_rows: int, probabilities: bool = True) -> PredictRequest:
    """The rows of a CSV body, in feature order, as text cells for the validator."""
    if body is None or not body.strip():
        raise InvalidCsv("The CSV body is empty; expected a line per row (a header line is optional).")
    reader = csv.reader(body.splitlines())
    records: list[list[str]] = []
    lines: list[int] = []
    try:
        for record in reader:
            if record and any(cell.strip() for cell in record):
                records.append(record)
                lines.append(reader.line_num)
    except csv.Error as error:
        raise InvalidCsv(f"The CSV body could not be read at line {reader.line_num}: {error}.") from None
    header = _header(records[0], lines[0], feature_names) if records else None
    if header is not None:
        records, lines = records[1:], lines[1:]
    if not records:
        raise InvalidCsv("The CSV body has a header but no rows; expected at least one row.")
    if len(records) > max_rows:
        raise TooManyInstances(f"The CSV body has {len(records)} rows; at most {max_rows} are accepted per request.")
    if header is not None:
        order = [header.index(name) for name in feature_names]
        width = len(header)
        for index, record in enumerate(records):
            if len(record) != width:
                raise InvalidInstances(f"line {lines[index]} has {len(record)} cells; the header names {width}.")
            records[index] = [record[position] for position in order]
    return PredictRequest(records, probabilities, text=True, row_label=lambda index: f"line {lines[index]}")


def _header(first: list[str], line: int, feature_names: Sequence[str]) -> list[str] | None:
    """The first line's names when it is a header (it names a feature), else None (it is data)."""
    cells = [cell.strip() for cell in first]
    known = set(feature_names)
    if not known.intersection(cells):
        return None
    unknown = [cell for cell in cells if cell not in known]
    missing = [name for name in feature_names if name not in cells]
    repeated = sorted({cell for cell in cells if cells.count(cell) > 1})
    if unknown or missing or repeated:
        problems = []
        if unknown:
            problems.append(f"unknown column(s) {', '.join(map(quote, unknown[:5]))}")
            if not cells[0]:  # what pandas' to_csv() writes by default
                problems[-1] += "; an unnamed first column is a saved DataFrame index: write the CSV with index=False"
        if missing:
            problems.append(f"no {', '.join(map(repr, missing[:5]))}")
        if repeated:
            problems.append(f"repeated {', '.join(map(quote, repeated[:5]))}")
        expected = names_shown(list(feature_names))
        raise InvalidInstances(
            f"The CSV header (line {line}) has {'; '.join(problems)}; expected each of {expected} once, "
            "in any order (or no header, with the columns in that order)."
        )
    return cells
