"""Batch scoring: a table of any size scored chunk by chunk, with the API's validation and predictions.

The steps are the states of the `BatchScore` state machine (template.yaml), and the local scorer runs the
same steps in one process:

    plan        resolve the model version once (an alias may move mid-run; the run does not), check the
                input's header against the model's features, write `_batch/run.json` and the nominal
                byte ranges `_batch/ranges.json`                                   (BatchPlan function)
    scan        one range: where its rows start (`lambda_forest.chunks`)          (ScoreChunk, Map)
    index       chain the scans into exact chunks of whole rows, `_batch/chunks.json` (BatchPlan)
    score       one chunk: read its rows, validate, predict, write `part-NNNNN.EXT` and, for rows that
                cannot be scored, `errors/part-NNNNN.jsonl`                       (ScoreChunk, Map)
    summarize   rows, errors, failed chunks, model version, duration: `_summary.json` (BatchPlan)

Re-running into the same output resumes: a part is written last, after its errors part, and carries
the run's id, so a chunk whose part exists is skipped. A different input or model for an output that
holds a run is refused.
"""

from __future__ import annotations

import hashlib
import json
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from lambda_forest.chunks import ByteRange, Chunk, Scan, index_chunks, nominal_ranges, scan_range, scan_window
from lambda_forest.errors import InvalidInput, InvalidInstances
from lambda_forest.manifest import Manifest
from lambda_forest.model_cache import LoadedModel, LoadPolicy, load_version
from lambda_forest.objects import InputFile, OutputLocation
from lambda_forest.store import DEFAULT_ALIAS, ModelStore
from lambda_forest.table_files import (
    BOM,
    CSV,
    DEFAULT_DELIMITER,
    DEFAULT_ENCODING,
    HEADER_LIMIT_BYTES,
    PARQUET,
    CsvDialect,
    OutputColumns,
    PredictionWriter,
    RowPicker,
    RowWriter,
    check_columns,
    error_line,
    parse_csv_header,
    read_records,
)

RUN_FILE = "_batch/run.json"
RANGES_FILE = "_batch/ranges.json"
SCANS_DIR = "_batch/scan/"
CHUNKS_FILE = "_batch/chunks.json"
SUMMARY_FILE = "_summary.json"
DEFAULT_CHUNK_BYTES = 64 * 2**20
BATCH_ROWS = 8192  # rows validated and predicted at a time: bounded memory, numpy-sized batches
RUN_FORMAT = 1
DEFAULT_POLICY = LoadPolicy()  # the function's default: compiled forests only, signatures when a key is set


def part_name(index: int, fmt: str) -> str:
    return f"part-{index:05d}.{fmt}"


def errors_name(index: int) -> str:
    return f"errors/part-{index:05d}.jsonl"


def utc_now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass(frozen=True)
class ScoreRequest:
    """What the user asked for (the CLI's arguments, the state machine's input)."""

    input: str
    output: str
    model_name: str
    model_version: str | None = None
    model_alias: str = DEFAULT_ALIAS
    input_format: str | None = None
    output_format: str | None = None
    id_column: str | None = None
    delimiter: str = DEFAULT_DELIMITER  # CSV only, as for training
    encoding: str = DEFAULT_ENCODING
    chunk_bytes: int = DEFAULT_CHUNK_BYTES
    concurrency: int | None = None  # workers at once (AWS); the stack's BatchConcurrency when None

    @classmethod
    def from_event(cls, event: dict[str, Any]) -> ScoreRequest:
        known = set(cls.__dataclass_fields__)
        unknown = sorted(set(event) - known - {"step"})
        if unknown:
            raise InvalidInput(
                f"Unknown field(s) {', '.join(unknown)} in the execution input; expected {sorted(known)}."
            )
        missing = [key for key in ("input", "output", "model_name") if not event.get(key)]
        if missing:
            raise InvalidInput(f"The execution input lacks {', '.join(missing)}.")
        values = {key: value for key, value in event.items() if key in known and value not in (None, "")}
        try:
            for key in ("chunk_bytes", "concurrency"):
                if key in values:
                    values[key] = int(values[key])
        except (TypeError, ValueError):
            raise InvalidInput("chunk_bytes and concurrency must be whole numbers.") from None
        if values.get("concurrency", 1) < 1:
            raise InvalidInput("concurrency must be at least 1.")
        return cls(**values)


@dataclass(frozen=True)
class Run:
    """A planned run, pinned to one model version and one version of the input (`_batch/run.json`)."""

    input: str
    output: str
    input_format: str
    output_format: str
    input_size: int
    input_fingerprint: str
    model_name: str
    model_version: str
    requested_model: str
    id_column: str | None
    columns: list[str] | None
    data_start: int
    chunk_bytes: int
    created_at: str
    id: str = ""
    format: int = RUN_FORMAT
    delimiter: str = DEFAULT_DELIMITER
    encoding: str = DEFAULT_ENCODING

    @property
    def dialect(self) -> CsvDialect:
        return CsvDialect(self.delimiter, self.encoding)

    def with_id(self) -> Run:
        identity = [self.input, self.input_fingerprint, self.model_name, self.model_version, self.input_format]
        identity += [self.output_format, self.id_column, self.chunk_bytes]
        if self.dialect != CsvDialect():  # so that runs planned before these options keep their ids
            identity += [self.delimiter, self.encoding]
        digest = hashlib.sha256(json.dumps(identity).encode()).hexdigest()[:16]
        return Run(**{**asdict(self), "id": digest})

    def to_json(self) -> bytes:
        return json.dumps(asdict(self), indent=2).encode()

    @classmethod
    def from_json(cls, data: bytes) -> Run:
        return cls(**json.loads(data))


# plan


def plan(
    request: ScoreRequest,
    store: ModelStore,
    source: InputFile,
    output: OutputLocation,
    *,
    detect_format: Callable[[str, str | None], str],
    parquet_layout: Callable[[InputFile], tuple[list[int], list[str]]] | None = None,
    policy: LoadPolicy = DEFAULT_POLICY,
) -> Run:
    """Resolve the model, check the input against it, and write the run and its ranges (or resume).

    `parquet_layout` (rows per row group, column names) reads Parquet; without it Parquet is refused.
    """
    input_format = detect_format(request.input, request.input_format)
    output_format = request.output_format or (CSV if input_format == PARQUET else input_format)
    if input_format == PARQUET and parquet_layout is None:
        raise InvalidInput(
            "Parquet input is scored locally only (python -m training score without --on aws): pyarrow is 166 MB "
            "unpacked and does not fit beside the function's layer under Lambda's 250 MB; convert it to CSV or "
            "JSON lines for AWS."
        )
    if request.chunk_bytes < 1:
        raise InvalidInput(f"chunk_bytes must be at least 1, not {request.chunk_bytes}.")
    dialect = CsvDialect(request.delimiter, request.encoding).checked()
    if input_format != CSV and dialect != CsvDialect():
        raise InvalidInput(
            f"The delimiter and encoding are for CSV input; {input_format} input is read as its format says "
            "(JSON lines are UTF-8)."
        )
    version = request.model_version or _alias_version(store, request.model_name, request.model_alias, policy)
    manifest = _manifest(store, request.model_name, version, policy)
    requested = f"version {request.model_version}" if request.model_version else f"alias {request.model_alias}"

    existing = output.get(RUN_FILE)
    if existing is not None:
        return _resume(Run.from_json(existing), request, source, requested, dialect)

    columns, data_start, row_groups = None, 0, []
    if input_format == CSV:
        header = _read_header(source, dialect)
        columns, data_start = header.columns, header.data_start
        RowPicker(manifest.feature_names, request.id_column, columns)  # refuses missing columns up front
    elif input_format == PARQUET:
        assert parquet_layout is not None
        row_groups, names = parquet_layout(source)
        check_columns(names, manifest.feature_names, request.id_column)
    run = Run(
        input=request.input,
        output=output.uri,
        input_format=input_format,
        output_format=output_format,
        input_size=source.size,
        input_fingerprint=source.fingerprint,
        model_name=request.model_name,
        model_version=version,
        requested_model=requested,
        id_column=request.id_column,
        columns=columns,
        data_start=data_start,
        chunk_bytes=request.chunk_bytes,
        created_at=utc_now(),
        delimiter=dialect.delimiter,
        encoding=dialect.encoding,
    ).with_id()
    if input_format == PARQUET:
        output.put(CHUNKS_FILE, _json([chunk.to_dict() for chunk in parquet_chunks(row_groups)]))
    else:
        ranges = nominal_ranges(source.size, data_start, request.chunk_bytes)
        output.put(RANGES_FILE, _json([asdict(byte_range) for byte_range in ranges]))
    output.put(RUN_FILE, run.to_json())  # last: a run file means the plan is complete
    return run


def _alias_version(store: ModelStore, name: str, alias: str, policy: LoadPolicy) -> str:
    from lambda_forest.errors import NotInStore

    found = store.read_alias(name, alias)
    if found is None:
        raise NotInStore(f"Model {name} has no alias {alias}; pass --version or promote a version.")
    return policy.check_alias(name, alias, found).version


def _manifest(store: ModelStore, name: str, version: str, policy: LoadPolicy) -> Manifest:
    """The version's manifest, its signature checked as the API would check it."""
    data = store.read_manifest(name, version)
    if policy.verifier is not None:
        from lambda_forest.signing import verify_manifest

        verify_manifest(policy.verifier, name, version, data, store.read_signature(name, version))
    return Manifest.from_json(data)


def _resume(run: Run, request: ScoreRequest, source: InputFile, requested: str, dialect: CsvDialect) -> Run:
    differences = []
    if run.input != request.input or run.input_fingerprint != source.fingerprint:
        differences.append(f"the input ({run.input} as it was then)")
    if run.model_name != request.model_name or (request.model_version and request.model_version != run.model_version):
        differences.append(f"the model ({run.model_name} {run.model_version})")
    if run.requested_model != requested and request.model_version:
        differences.append(f"the model ({run.requested_model})")
    if request.id_column != run.id_column:
        differences.append(f"the id column ({run.id_column})")
    if request.output_format and request.output_format != run.output_format:
        differences.append(f"the output format ({run.output_format})")
    if dialect != run.dialect:
        differences.append(f"the delimiter and encoding ({run.delimiter!r}, {run.encoding})")
    if differences:
        raise InvalidInput(
            f"The output {run.output} holds another run, started with {' and '.join(dict.fromkeys(differences))}; "
            "choose another output, or empty it to start over."
        )
    return run  # resumed: same model version as the first attempt, even if the alias moved since


def _read_header(source: InputFile, dialect: CsvDialect) -> Any:
    size = 64 * 1024
    while True:
        head = source.read(0, min(size, source.size))
        header = parse_csv_header(head, len(head) >= source.size, dialect)
        if header is not None:
            return header
        if len(head) >= source.size:
            raise InvalidInput(f"The CSV file {source.uri} is empty; expected a header row and data rows.")
        if size >= HEADER_LIMIT_BYTES:
            raise InvalidInput(f"The CSV file's first row is longer than {HEADER_LIMIT_BYTES} bytes; is it CSV?")
        size *= 4


def parquet_chunks(row_group_rows: list[int]) -> list[Chunk]:
    """One chunk per Parquet row group (start/end are row group numbers)."""
    chunks, first_row = [], 0
    for index, rows in enumerate(row_group_rows):
        chunks.append(Chunk(index, index, index + 1, first_row, rows))
        first_row += rows
    return chunks


def read_run(output: OutputLocation) -> Run:
    data = output.get(RUN_FILE)
    if data is None:
        raise InvalidInput(f"The output {output.uri} holds no planned run ({RUN_FILE}); run the plan step first.")
    return Run.from_json(data)


def read_ranges(output: OutputLocation) -> list[ByteRange]:
    return [ByteRange(**item) for item in json.loads(output.get(RANGES_FILE) or b"[]")]


def read_chunks(output: OutputLocation) -> list[Chunk]:
    return [Chunk.from_dict(item) for item in json.loads(output.get(CHUNKS_FILE) or b"[]")]


def _json(body: Any) -> bytes:
    return json.dumps(body, separators=(",", ":")).encode()


# scan and index


def scan_name(byte_range: ByteRange) -> str:
    return f"{SCANS_DIR}{byte_range.start:015d}.json"


def scan(run: Run, byte_range: ByteRange, source: InputFile, output: OutputLocation) -> Scan:
    """Scan one nominal range and keep the result (a re-run reads it back instead)."""
    kept = output.get(scan_name(byte_range))
    if kept is not None:
        return Scan.from_dict(json.loads(kept))
    window = scan_window(byte_range)
    result = scan_range(source.read(window.start, window.end), byte_range, quoted=run.input_format == CSV)
    output.put(scan_name(byte_range), _json(result.to_dict()))
    return result


def index(run: Run, output: OutputLocation) -> list[Chunk]:
    """Chain every range's scan into exact chunks; writes `_batch/chunks.json`."""
    ranges = read_ranges(output)
    scans = []
    for byte_range in ranges:
        kept = output.get(scan_name(byte_range))
        if kept is None:
            raise InvalidInput(f"The range starting at byte {byte_range.start} has not been scanned; scan it first.")
        scans.append(Scan.from_dict(json.loads(kept)))
    chunks = index_chunks(scans, run.input_size)
    output.put(CHUNKS_FILE, _json([chunk.to_dict() for chunk in chunks]))
    return chunks


# score


@dataclass
class ChunkResult:
    index: int
    rows: int
    scored: int
    errors: int
    skipped: bool = False
    warnings: int = 0
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


RecordSource = Callable[[Run, Chunk], Iterator[Any]]


def text_records(source: InputFile) -> RecordSource:
    """The records of a CSV or JSON lines chunk, read from its byte range."""

    def records(run: Run, chunk: Chunk) -> Iterator[Any]:
        with source.stream(chunk.start, chunk.end) as stream:
            if chunk.start == 0 and stream.peek(len(BOM)).startswith(BOM):  # JSON lines have no header to hold it
                stream.read(len(BOM))
            yield from read_records(stream, run.input_format, run.dialect)

    return records


WriterFactory = Callable[[Any, str, OutputColumns], RowWriter]


def text_writer(file: Any, fmt: str, columns: OutputColumns) -> PredictionWriter:
    return PredictionWriter(file, fmt, columns)


def score(
    run: Run,
    chunk: Chunk,
    records: RecordSource,
    output: OutputLocation,
    model: LoadedModel,
    open_writer: WriterFactory = text_writer,
) -> ChunkResult:
    """Score one chunk into its part (and errors part); a chunk whose part this run wrote is skipped."""
    started = time.perf_counter()
    part = part_name(chunk.index, run.output_format)
    done = output.metadata(part)
    if done is not None and done.get("run") == run.id:
        return ChunkResult(
            chunk.index, chunk.rows, int(done["scored"]), int(done["errors"]), True, int(done.get("warnings", 0))
        )
    if model.manifest.version != run.model_version:
        raise InvalidInput(f"Chunk {chunk.index} got model {model.manifest.version}; the run uses {run.model_version}.")
    picker = RowPicker(model.manifest.feature_names, run.id_column, run.columns)
    columns = OutputColumns(run.id_column, model.manifest.classes)
    with tempfile.TemporaryDirectory() as scratch:
        part_path, errors_path = Path(scratch) / "part", Path(scratch) / "errors"
        with part_path.open("wb") as part_file, errors_path.open("wb") as errors_file:
            writer = open_writer(part_file, run.output_format, columns)
            seen = scored = failed = warned = 0
            for batch in _batches(records(run, chunk), BATCH_ROWS):
                first = chunk.first_row + seen
                rows, failures, warnings = score_batch(batch, first, picker, model, writer)
                scored += rows
                warned += warnings
                for row, row_id, reason, code in failures:
                    errors_file.write(error_line(row, row_id, reason, code))
                failed += len(failures)
                seen += len(batch)
            writer.close()
        if seen != chunk.rows:
            raise InvalidInput(
                f"Chunk {chunk.index} holds {seen} rows where the scan found {chunk.rows}: the file changed, or "
                "a quote character stands inside an unquoted field; quote whole fields."
            )
        metadata = {
            "run": run.id,
            "rows": str(seen),
            "scored": str(scored),
            "errors": str(failed),
            "warnings": str(warned),
        }
        if failed:
            output.put_file(errors_name(chunk.index), errors_path, metadata)
        output.put_file(part, part_path, metadata)  # last: the part marks the chunk done
    return ChunkResult(chunk.index, seen, scored, failed, warnings=warned, seconds=time.perf_counter() - started)


def _batches(records: Iterable[Any], size: int) -> Iterator[list[Any]]:
    batch: list[Any] = []
    for record in records:
        batch.append(record)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def score_batch(
    records: list[Any], first_row: int, picker: RowPicker, model: LoadedModel, writer: RowWriter
) -> tuple[int, list[tuple[int, Any, str, str]], int]:
    """Validate, predict and write one batch; returns (rows scored, [(row, id, reason, code)], warnings)."""
    picked = [picker.pick(record) for record in records]
    failures: list[tuple[int, Any, str, str]] = []
    good: list[int] = []
    for offset, row in enumerate(picked):
        if row.values is None:
            failures.append((first_row + offset, row.id, f"row {first_row + offset} {row.reason}.", "invalid_row"))
        else:
            good.append(offset)
    rows = [first_row + offset for offset in good]
    values = [picked[offset].values for offset in good]
    matrix, refused, warnings = encode_rows(values, rows, model.manifest, picker.columns is not None)  # type: ignore[arg-type]
    if refused:
        failures += [(rows[i], picked[good[i]].id, reason, code) for i, (reason, code) in refused.items()]
        keep = [i for i in range(len(good)) if i not in refused]
        matrix, good = matrix[keep], [good[i] for i in keep]
    if good:
        result = model.predictor.predict(matrix, model.manifest.is_classifier)
        writer.write(
            [first_row + offset for offset in good],
            [picked[offset].id for offset in good],
            result.predictions,
            result.probabilities,
            model.manifest.version,
        )
    failures.sort(key=lambda failure: failure[0])
    return len(good), failures, warnings


def encode_rows(
    values: list[list[Any]], rows: list[int], manifest: Manifest, text_cells: bool
) -> tuple[np.ndarray, dict[int, tuple[str, str]], int]:
    """The rows as the model's float matrix, through the API's row validator (`FeatureSchema.validate`);
    rows it refuses come back by position with its reason (the others still score), and the number of
    warnings (unknown categories) on the rows kept.

    A batch the validator refuses is split in halves until each refused row stands alone: a few bad rows
    cost a few dozen validations of smaller batches, not one per row.
    """
    schema = manifest.schema
    matrix = np.empty((len(values), schema.width))
    refused: dict[int, tuple[str, str]] = {}
    warnings = 0
    pending = [(0, len(values))]
    while pending:
        start, stop = pending.pop()
        try:
            validated = schema.validate(
                values[start:stop], text=text_cells, row_label=lambda offset, start=start: f"row {rows[start + offset]}"
            )
        except InvalidInstances as error:
            if stop - start == 1:
                refused[start] = (error.message, error.code)
            else:
                middle = (start + stop) // 2
                pending += [(middle, stop), (start, middle)]
            continue
        matrix[start:stop] = validated.matrix
        warnings += len(validated.warnings)
    return matrix, refused, warnings


# summarize


@dataclass
class Summary:
    status: str
    input: str
    output: str
    model: dict[str, str]
    rows: int
    scored: int
    errors: int
    chunks: int
    warnings: int = 0  # unknown categories, treated as missing, as the API warns of them
    failed_chunks: list[dict[str, Any]] = field(default_factory=list)
    started_at: str = ""
    finished_at: str = ""
    duration_seconds: float = 0.0
    parts: list[str] = field(default_factory=list)
    error_parts: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def summarize(
    run: Run, output: OutputLocation, started_at: str | None = None, failures: dict[int, dict[str, str]] | None = None
) -> Summary:
    """Count what every chunk's part says; chunks without a part failed. Writes `_summary.json`."""
    chunks = read_chunks(output)
    summary = Summary(
        status="succeeded",
        input=run.input,
        output=run.output,
        model={"name": run.model_name, "version": run.model_version},
        rows=sum(chunk.rows for chunk in chunks),
        scored=0,
        errors=0,
        chunks=len(chunks),
        started_at=started_at or run.created_at,
    )
    for chunk in chunks:
        part = part_name(chunk.index, run.output_format)
        done = output.metadata(part)
        if done is None or done.get("run") != run.id:
            reason = (failures or {}).get(chunk.index, {})
            summary.failed_chunks.append({**chunk.to_dict(), **reason})
            continue
        summary.parts.append(part)
        summary.scored += int(done["scored"])
        summary.errors += int(done["errors"])
        summary.warnings += int(done.get("warnings", 0))
        if int(done["errors"]):
            summary.error_parts.append(errors_name(chunk.index))
    if summary.failed_chunks:
        summary.status = "failed"
    summary.finished_at = utc_now()
    summary.duration_seconds = round(_seconds_between(summary.started_at, summary.finished_at), 3)
    output.put(SUMMARY_FILE, json.dumps(summary.to_dict(), indent=2).encode())
    return summary


def map_failures(output: OutputLocation, results: dict[str, Any] | None) -> dict[int, dict[str, str]]:
    """Why chunks failed, from the score Map's ResultWriter files (Step Functions writes them under the
    output prefix): {chunk index: {"error": ..., "cause": ...}}."""
    details = (results or {}).get("ResultWriterDetails") or {}
    prefix = output.uri.split("/", 3)[3] + "/" if output.uri.count("/") >= 3 else ""
    manifest = output.get(str(details.get("Key", "")).removeprefix(prefix)) if details.get("Key") else None
    if manifest is None:
        return {}
    failures: dict[int, dict[str, str]] = {}
    for entry in json.loads(manifest).get("ResultFiles", {}).get("FAILED", []):
        for item in json.loads(output.get(str(entry["Key"]).removeprefix(prefix)) or b"[]"):
            try:
                chunk = json.loads(item["Input"])["chunk"]["index"]
            except (KeyError, TypeError, ValueError):
                continue
            failures[int(chunk)] = {"error": item.get("Error", ""), "cause": _lambda_message(item.get("Cause", ""))}
    return failures


def _lambda_message(cause: str) -> str:
    """A Lambda failure's Cause is its error as JSON; keep the message, not the stack trace."""
    try:
        return str(json.loads(cause).get("errorMessage", cause))
    except (ValueError, AttributeError):
        return cause


def _seconds_between(start: str, end: str) -> float:
    def parse(text: str) -> datetime:
        return datetime.fromisoformat(text.replace("Z", "+00:00"))

    try:
        return (parse(end) - parse(start)).total_seconds()
    except ValueError:
        return 0.0


# The worker's model: loaded once per execution environment and version, like the API's.


_models: dict[tuple[str, str, str], LoadedModel] = {}


def model_for(run: Run, store: ModelStore, policy: LoadPolicy = DEFAULT_POLICY) -> LoadedModel:
    """The run's version, loaded (and verified) under the API's policy; kept while the worker is warm."""
    key = (store.uri, run.model_name, run.model_version)
    if key not in _models:
        _models.clear()  # one model per worker at a time
        _models[key] = load_version(store, run.model_name, run.model_version, policy)
    return _models[key]
