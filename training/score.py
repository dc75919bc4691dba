"""`python -m training score` in this process: the BatchScore state machine's steps, run one after another.

Same plan, scans, index, chunk scoring and summary as on AWS (`lambda_forest.batch`), so a local run and
an AWS run of the same file give the same parts. Parquet (pyarrow, training-side only) is read here by
row groups and written here. A local output file is assembled from parts staged beside it; an
interrupted run resumes from the parts already written.
"""

from __future__ import annotations

import io
import shutil
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from lambda_forest import batch
from lambda_forest.chunks import Chunk
from lambda_forest.errors import InvalidInput
from lambda_forest.objects import InputFile, LocalOutput, open_input, open_output
from lambda_forest.store import ModelStore
from lambda_forest.table_files import CSV, JSONL, PARQUET, OutputColumns, format_of

Progress = Callable[[str], None]


def score_file(request: batch.ScoreRequest, store: ModelStore, progress: Progress) -> batch.Summary:
    """Score `request.input` into `request.output` (a file, a directory or an S3 prefix)."""
    started = batch.utc_now()
    clock = time.perf_counter()
    format_of(request.input, request.input_format)  # a format we cannot read is refused before any I/O
    source = open_input(request.input)
    final_file = _single_file_output(request.output)
    output = LocalOutput(_staging_dir(final_file)) if final_file else open_output(request.output)
    if final_file and not request.output_format:
        request = _with_output_format(request, final_file)
    run = batch.plan(request, store, source, output, detect_format=format_of, parquet_layout=parquet_layout)
    progress(f"scoring {run.input} ({run.input_size / 1e6:.1f} MB) with {run.model_name} {run.model_version}")

    if run.input_format == PARQUET:
        chunks = batch.read_chunks(output)
    else:
        for byte_range in batch.read_ranges(output):
            batch.scan(run, byte_range, source, output)
        chunks = batch.index(run, output)
    total_rows = sum(chunk.rows for chunk in chunks)
    progress(f"{total_rows} rows in {len(chunks)} chunk(s)")

    model = batch.model_for(run, store)
    records = parquet_records(source) if run.input_format == PARQUET else batch.text_records(source)
    done_rows = 0
    for chunk in chunks:
        result = batch.score(run, chunk, records, output, model, open_writer=open_writer)
        done_rows += result.rows
        state = "already scored" if result.skipped else f"{result.rows / max(result.seconds, 1e-9):,.0f} rows/s"
        progress(f"chunk {chunk.index + 1}/{len(chunks)}: {result.rows} rows, {result.errors} errors ({state})")
    summary = batch.summarize(run, output, started_at=started)
    if final_file:
        assemble(output, summary, run, final_file)
        shutil.rmtree(output.root)
    progress(f"{done_rows} rows in {time.perf_counter() - clock:.1f} s")
    return summary


def _single_file_output(output: str) -> Path | None:
    """A local output that names a file (not a directory, not S3): the parts are assembled into it."""
    if output.startswith("s3://") or output.endswith("/"):
        return None
    path = Path(output.removeprefix("file://")).expanduser().resolve()
    return None if path.is_dir() else path


def _staging_dir(final_file: Path) -> Path:
    return final_file.with_name(f".{final_file.name}.parts")


def errors_file(final_file: Path) -> Path:
    return final_file.with_name(f"{final_file.stem}.errors.jsonl")


def _with_output_format(request: batch.ScoreRequest, final_file: Path) -> batch.ScoreRequest:
    from dataclasses import replace

    try:
        fmt = format_of(str(final_file))
    except InvalidInput:
        return request
    return replace(request, output_format=fmt)


def assemble(output: LocalOutput, summary: batch.Summary, run: batch.Run, final_file: Path) -> None:
    """Join the parts into the output file and the errors parts into `<name>.errors.jsonl`."""
    final_file.parent.mkdir(parents=True, exist_ok=True)
    staged = final_file.with_name(f".{final_file.name}.tmp")
    parts = [output.root / part for part in summary.parts]
    if run.output_format == PARQUET:
        import pyarrow.parquet as pq

        writer = None
        for part in parts:
            table = pq.read_table(part)
            writer = writer or pq.ParquetWriter(staged, table.schema)
            writer.write_table(table)
        if writer:
            writer.close()
    else:
        with staged.open("wb") as joined:
            for number, part in enumerate(parts):
                with part.open("rb") as data:
                    if run.output_format == CSV and number:
                        data.readline()  # each part has the header; keep the first
                    shutil.copyfileobj(data, joined)
    staged.replace(final_file)
    errors = errors_file(final_file)
    if summary.error_parts:
        with errors.open("wb") as joined:
            for part in summary.error_parts:
                joined.write((output.root / part).read_bytes())
    else:
        errors.unlink(missing_ok=True)


# Parquet, by row groups (pyarrow reads the footer and each group through byte ranges).


class _SeekableInput(io.RawIOBase):
    def __init__(self, source: InputFile) -> None:
        self.source = source
        self.position = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self.position, io.SEEK_END: self.source.size}[whence]
        self.position = max(base + offset, 0)
        return self.position

    def tell(self) -> int:
        return self.position

    def readinto(self, buffer: Any) -> int:
        data = self.source.read(self.position, min(self.position + len(buffer), self.source.size))
        buffer[: len(data)] = data
        self.position += len(data)
        return len(data)


def _parquet_file(source: InputFile) -> Any:
    import pyarrow.parquet as pq

    try:
        return pq.ParquetFile(io.BufferedReader(_SeekableInput(source), buffer_size=1 << 20))
    except Exception as error:
        raise InvalidInput(f"{source.uri} is not a Parquet file: {error}") from None


def parquet_layout(source: InputFile) -> tuple[list[int], list[str]]:
    """The rows of each row group, and the column names."""
    parquet = _parquet_file(source)
    metadata = parquet.metadata
    return [metadata.row_group(index).num_rows for index in range(metadata.num_row_groups)], parquet.schema_arrow.names


def parquet_records(source: InputFile) -> batch.RecordSource:
    """Each row of a chunk's row group as an object by column name (typed values; null is missing)."""

    def records(run: batch.Run, chunk: Chunk) -> Iterator[dict[str, Any]]:
        table = _parquet_file(source).read_row_group(chunk.start)
        yield from table.to_pylist()

    return records


def open_writer(file: Any, fmt: str, columns: OutputColumns) -> Any:
    if fmt in (CSV, JSONL):
        return batch.text_writer(file, fmt, columns)
    return ParquetPredictionWriter(file, columns)


class ParquetPredictionWriter:
    """Prediction rows as Parquet: one row group per batch, columns as in the CSV output."""

    def __init__(self, file: Any, columns: OutputColumns) -> None:
        self.file = file
        self.columns = columns
        self.writer: Any = None
        self.schema: Any = None

    def write(
        self,
        rows: list[int],
        ids: list[Any],
        predictions: list[Any],
        probabilities: list[list[float]] | None,
        version: str,
    ) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        data: dict[str, Any] = {"row": pa.array(rows, pa.int64())}
        if self.columns.id_column:
            data[self.columns.id_column] = pa.array([None if i is None else str(i) for i in ids], pa.string())
        data["prediction"] = pa.array(predictions, pa.string() if self.columns.classes else pa.float64())
        for position, label in enumerate(self.columns.classes or []):
            data[f"probability_{label}"] = pa.array([p[position] for p in probabilities or []], pa.float64())
        data["model_version"] = pa.array([version] * len(rows), pa.string())
        table = pa.table(data)
        if self.writer is None:
            self.writer = pq.ParquetWriter(self.file, table.schema)
        self.writer.write_table(table)

    def close(self) -> None:
        if self.writer is None:  # no row scored: still a valid, empty file with the columns
            import pyarrow as pa
            import pyarrow.parquet as pq

            fields = [pa.field(name, pa.string()) for name in self.columns.names]
            pq.ParquetWriter(self.file, pa.schema(fields)).close()
        else:
            self.writer.close()


def describe(summary: batch.Summary, final_file: Path | None) -> list[str]:
    """What the CLI prints at the end of a run."""
    where = str(final_file) if final_file else summary.output
    lines = [
        f"scored {summary.scored} of {summary.rows} rows with {summary.model['name']} {summary.model['version']}",
        f"  output   {where}",
    ]
    if summary.errors:
        errors = errors_file(final_file) if final_file else f"{summary.output}/errors/"
        lines.append(f"  errors   {summary.errors} rows could not be scored: {errors}")
    if summary.failed_chunks:
        lines.append(f"  failed   {len(summary.failed_chunks)} chunk(s); run the same command again to resume")
    lines.append(f"  took     {summary.duration_seconds:.1f} s")
    return lines
