"""Prediction capture and ground truth (shared/DESIGN.md section 6): the records, written and read.

The predict function never writes to the store. A sampled request becomes one JSON line on standard
output: Lambda sends it to CloudWatch Logs, where a subscription filter (`FILTER_PATTERNS`) forwards
the lines of each kind to Amazon Data Firehose, which writes them, gzipped and by hour, under
`{store}/{name}/captures/` (labels under `labels/`). Locally, `python -m local_lambda` plays the filter
and Firehose (`record_directory`), so the same lines land in the local store.

    {"kind": "prediction", "request_id": "...", "time": "2026-12-01T10:15:00.123Z",
     "model": {"name": "loans", "version": "..."}, "alias": "live", "features": [...],
     "rows": [[...]], "row_ids": ["..."], "row_count": 1,
     "predictions": [...], "probabilities": [[...]] or null, "warnings": [...]}
    {"kind": "label", "row_id": "...", "label": ..., "time": "...", "request_id": "..."}

`row_count` is the number of rows in the request: a large batch is capped to a uniform sample of
`max_rows` rows (and to `max_bytes` per line, under CloudWatch Logs' 256 KB event limit), so
`len(rows) < row_count` records the cap. Warnings keep only the captured rows, renumbered to them.
"""

from __future__ import annotations

import random
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson

from lambda_forest.store import CAPTURES, LABELS

PREDICTION = "prediction"
LABEL = "label"
RECORD_DIRECTORY = {PREDICTION: CAPTURES, LABEL: LABELS}
# The CloudWatch Logs subscription filters in template.yaml: one per kind, each feeding its Firehose stream.
FILTER_PATTERNS = {kind: f'{{ $.kind = "{kind}" }}' for kind in RECORD_DIRECTORY}

DEFAULT_MAX_ROWS = 100
DEFAULT_MAX_BYTES = 200_000  # CloudWatch Logs truncates events beyond 256 KB; leave room for the envelope
MAX_ROW_ID_LENGTH = 256


def timestamp(when: datetime) -> str:
    """UTC, to the millisecond: 2026-12-01T10:15:00.123Z."""
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def default_row_ids(request_id: str | None, count: int) -> list[str]:
    """`{request_id}:{row}`: the ids of a request's rows when the caller sent none."""
    return [f"{request_id}:{row}" for row in range(count)]


def write_line(line: bytes) -> None:
    """Standard output, flushed: in Lambda one line is one CloudWatch Logs event."""
    sys.stdout.write(line.decode() + "\n")
    sys.stdout.flush()


def _utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass
class Capturer:
    """Decides which requests to capture and writes their lines; `capture` never raises."""

    sample_rate: float = 0.0
    max_rows: int = DEFAULT_MAX_ROWS
    max_bytes: int = DEFAULT_MAX_BYTES
    rng: random.Random = field(default_factory=random.Random)
    write: Callable[[bytes], None] = write_line
    clock: Callable[[], datetime] = _utc_now
    on_failure: Callable[[Exception], None] | None = None

    def sampled(self) -> bool:
        """Whether this request is captured: a share `sample_rate` of requests, drawn independently."""
        return self.sample_rate >= 1 or (self.sample_rate > 0 and self.rng.random() < self.sample_rate)

    def capture(
        self,
        *,
        request_id: str | None,
        response: dict[str, Any],
        features: Sequence[str],
        instances: Sequence[Any],
        ids: Sequence[str] | None = None,
        alias: str | None = None,
        read_rows: Callable[[Sequence[int]], list[list[Any]]] | None = None,
    ) -> bool:
        """Write the capture line of one answered request; False (and `on_failure`) if it could not be written.

        `instances` are the request's validated rows (lists in feature order, or objects by feature name)
        and `response` the body returned for them. Rows of text cells (CSV) come with `read_rows`, which
        gives the captured ones (by index) as the model read them: numbers, not their text.
        """
        try:
            line = self._line(request_id, response, features, instances, ids, alias, read_rows)
            if line is None:
                raise CaptureTooLarge(f"a single captured row is over the {self.max_bytes}-byte line limit")
            self.write(line)
            return True
        except Exception as error:  # a capture never fails the request it records
            if self.on_failure:
                self.on_failure(error)
            return False

    def record_labels(self, labels: Sequence[tuple[str, Any]], request_id: str | None) -> int:
        """Write one label line per (row id, label); raises if they cannot be written (feedback is the request)."""
        now = timestamp(self.clock())
        for row_id, label in labels:
            self.write(label_line(row_id, label, now, request_id))
        return len(labels)

    def _line(
        self,
        request_id: str | None,
        response: dict[str, Any],
        features: Sequence[str],
        instances: Sequence[Any],
        ids: Sequence[str] | None,
        alias: str | None,
        read_rows: Callable[[Sequence[int]], list[list[Any]]] | None,
    ) -> bytes | None:
        count = len(instances)
        kept = list(range(count)) if count <= self.max_rows else sorted(self.rng.sample(range(count), self.max_rows))
        row_ids = list(ids) if ids is not None else default_row_ids(request_id, count)
        base = {
            "kind": PREDICTION,
            "request_id": request_id,
            "time": timestamp(self.clock()),
            "model": response.get("model"),
            "alias": alias,
            "features": list(features),
        }
        while kept:
            line = orjson.dumps(base | _rows_part(kept, count, features, instances, row_ids, response, read_rows))
            if len(line) <= self.max_bytes:
                return line
            if len(kept) == 1:
                return None
            shrunk = max(1, int(len(kept) * self.max_bytes / len(line) * 0.9))
            kept = sorted(self.rng.sample(kept, shrunk))
        return None


class CaptureTooLarge(ValueError):
    """Even one row makes a capture line too long to log."""


def _rows_part(
    kept: list[int],
    count: int,
    features: Sequence[str],
    instances: Sequence[Any],
    row_ids: Sequence[str],
    response: dict[str, Any],
    read_rows: Callable[[Sequence[int]], list[list[Any]]] | None = None,
) -> dict[str, Any]:
    position = {row: index for index, row in enumerate(kept)}
    probabilities = response.get("probabilities")
    predictions = response["predictions"]
    return {
        "rows": read_rows(kept) if read_rows else [_in_feature_order(instances[row], features) for row in kept],
        "row_ids": [row_ids[row] for row in kept],
        "row_count": count,
        "predictions": [predictions[row] for row in kept],
        "probabilities": None if probabilities is None else [probabilities[row] for row in kept],
        "warnings": [
            warning | {"row": position[warning["row"]]}
            for warning in response.get("warnings", [])
            if warning.get("row") in position
        ],
    }


def _in_feature_order(row: Any, features: Sequence[str]) -> list[Any]:
    return [row[name] for name in features] if isinstance(row, dict) else list(row)


def label_line(row_id: str, label: Any, time: str, request_id: str | None = None) -> bytes:
    return orjson.dumps({"kind": LABEL, "row_id": row_id, "label": label, "time": time, "request_id": request_id})


def parse_record(line: bytes | str) -> dict[str, Any] | None:
    """A capture or label record from one line, or None for anything else (blank, not JSON, other logs)."""
    try:
        record = orjson.loads(line)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(record, dict) or record.get("kind") not in RECORD_DIRECTORY:
        return None
    return record


def record_directory(line: bytes | str) -> str | None:
    """Where a log line goes, as the subscription filters route it: captures/, labels/ or nowhere."""
    if b'"kind"' not in (line if isinstance(line, bytes) else line.encode()):  # cheap test for most log lines
        return None
    record = parse_record(line)
    return RECORD_DIRECTORY[record["kind"]] if record else None
