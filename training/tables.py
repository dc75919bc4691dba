"""The user's table: read (CSV or Parquet, a local file or s3://) and turned into training data.

Reading uses pandas (and pyarrow for Parquet) with their defaults, so a data scientist who reads the same
file with `pandas.read_csv` or `pandas.read_parquet` gets the columns the model was trained on, and
`model.joblib` predicts on them directly. Training only: nothing here reaches the Lambda function.

What each column becomes (shared/DESIGN.md section 2, `features`):
- numbers stay numeric; text, booleans and the columns named in `--categorical` are categorical
  (their values as text, `lambda_forest.features.category_text`); missing cells stay missing;
- excluded, and reported: `--drop` columns, columns with no values, text columns that are nearly
  identifiers (almost every value distinct: ids, names, free text) and a saved DataFrame index (an
  unnamed column numbering the rows 0, 1, 2, ...);
- refused, with one line that says what to do: dates, columns that mix numbers and text, categorical
  columns with more than `--max-categories` distinct values, and values that are neither (lists, bytes).
Rows whose target is missing are dropped and counted; duplicate rows are counted.
"""

from __future__ import annotations

import csv
import hashlib
import io
import re
from dataclasses import dataclass
from typing import Any

import numpy as np

from lambda_forest.errors import TrainingError
from lambda_forest.features import CATEGORICAL, NUMERIC, Feature, FeatureSchema, category_texts
from lambda_forest.manifest import CLASSIFICATION, REGRESSION
from lambda_forest.table_files import DEFAULT_DELIMITER, DEFAULT_ENCODING, other_delimiter
from training.data import MAX_INTEGER_CLASSES, DataReport, Dataset

CSV = "csv"
PARQUET = "parquet"
PARQUET_MAGIC = b"PAR1"
DEFAULT_MAX_CATEGORIES = 1000
# A text column with at least this share of distinct values (and more than IDENTIFIER_MIN of them) is an id.
IDENTIFIER_SHARE = 0.9
IDENTIFIER_MIN = 20
# A text column where at least this share of values read as numbers mixes numbers and text.
MIXED_NUMBER_SHARE = 0.5
DATE_SHARE = 0.9
DATE_SAMPLE = 1000
_DATE = re.compile(
    r"^\s*(\d{4}-\d{1,2}-\d{1,2}([ T]\d{1,2}:\d{2}(:\d{2}(\.\d+)?)?)?(Z|[+-]\d{2}:?\d{2})?"
    r"|\d{1,2}[/.-]\d{1,2}[/.-]\d{2,4}( \d{1,2}:\d{2}(:\d{2})?)?)\s*$"
)
# pandas names a column with a blank header "Unnamed: N"; a row number there is a saved DataFrame index.
_UNNAMED = re.compile(r"^Unnamed: \d+$")


@dataclass(frozen=True)
class TableOptions:
    categorical: tuple[str, ...] = ()
    drop: tuple[str, ...] = ()
    max_categories: int = DEFAULT_MAX_CATEGORIES
    delimiter: str = DEFAULT_DELIMITER
    encoding: str = DEFAULT_ENCODING


def table_format(source: str, requested: str | None = None) -> str:
    """CSV unless asked for Parquet or the name ends in .parquet / .pq."""
    if requested:
        return requested
    return PARQUET if source.lower().endswith((".parquet", ".pq")) else CSV


def source_name(source: str) -> str:
    """The file name without folders or suffix: the model's default name."""
    stem = source.rstrip("/").rsplit("/", 1)[-1]
    return stem.rsplit(".", 1)[0] if "." in stem else stem


def read_source(source: str) -> bytes:
    """The bytes of a local file or an `s3://bucket/key` object."""
    if source.startswith("s3://"):
        return _read_s3(source)
    try:
        with open(source, "rb") as handle:
            return handle.read()
    except FileNotFoundError:
        raise TrainingError(f"{source} does not exist; check the path.") from None
    except IsADirectoryError:
        raise TrainingError(f"{source} is a directory; expected a CSV or Parquet file.") from None
    except OSError as exc:
        raise TrainingError(f"{source} cannot be read: {exc.strerror}.") from None


def _read_s3(uri: str) -> bytes:
    from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError

    from lambda_forest.store import make_s3_client

    bucket, _, key = uri[len("s3://") :].partition("/")
    if not bucket or not key:
        raise TrainingError(f"{uri} names no object; expected s3://BUCKET/KEY.")
    try:
        return make_s3_client().get_object(Bucket=bucket, Key=key)["Body"].read()
    except ClientError as exc:
        code = str(exc.response.get("Error", {}).get("Code", ""))
        if code in ("NoSuchKey", "404", "NotFound"):
            raise TrainingError(f"{uri} does not exist; check the key.") from None
        if code == "NoSuchBucket":
            raise TrainingError(f"{uri}: the bucket {bucket!r} does not exist.") from None
        if code in ("AccessDenied", "403", "Forbidden", "InvalidAccessKeyId", "SignatureDoesNotMatch"):
            raise TrainingError(f"{uri}: access was refused ({code}); check the credentials and policy.") from None
        raise TrainingError(f"{uri} could not be read: S3 answered {code}.") from None
    except NoCredentialsError:
        raise TrainingError(f"{uri}: no AWS credentials were found; configure them to read from S3.") from None
    except BotoCoreError as exc:
        raise TrainingError(f"{uri}: S3 cannot be reached ({type(exc).__name__}).") from None


def read_table(source: str, fmt: str = CSV, options: TableOptions = TableOptions()) -> tuple[Any, bytes, str]:
    """The table as pandas reads it with its defaults, the file's bytes, and its format.

    A Parquet file passed as CSV is read as the Parquet file it is (its signature says so).
    """
    raw = read_source(source)
    if fmt == PARQUET or (raw.startswith(PARQUET_MAGIC) and raw.endswith(PARQUET_MAGIC)):
        return _read_parquet(source, raw), raw, PARQUET
    return _read_csv(source, raw, options), raw, CSV


def _read_parquet(source: str, raw: bytes) -> Any:
    import pandas as pd

    if not (raw.startswith(PARQUET_MAGIC) and raw.endswith(PARQUET_MAGIC)):
        raise TrainingError(f"{source} is not a Parquet file (no Parquet signature); pass a CSV file with --csv.")
    try:
        frame = pd.read_parquet(io.BytesIO(raw))
    except Exception as exc:  # pyarrow raises many kinds for a damaged file
        raise TrainingError(f"{source} is not a readable Parquet file: {_first_line(exc)}.") from None
    frame.columns = [str(name) for name in frame.columns]
    return frame


def _read_csv(source: str, raw: bytes, options: TableOptions) -> Any:
    import pandas as pd

    try:
        text_head = raw[:65536].decode(options.encoding)
    except UnicodeDecodeError as exc:
        if exc.start < 65536 - 4:  # not just a character cut in half at the sample's end
            raise _not_encoded(source, options.encoding) from None
        text_head = raw[: exc.start].decode(options.encoding)
    except LookupError:
        raise TrainingError(f"--encoding {options.encoding!r} is not an encoding Python knows.") from None
    header = next(csv.reader(io.StringIO(text_head.lstrip("\ufeff")), delimiter=options.delimiter), None)
    if not header or not any(cell.strip() for cell in header):
        raise TrainingError(f"CSV file {source} is empty; expected a header row and data rows.")
    other = other_delimiter(header, options.delimiter)
    if other:
        raise TrainingError(
            f"CSV file {source} separates its values with '{other}', not {options.delimiter!r}; "
            f"pass --delimiter '{other}'."
        )
    repeated = sorted({name for name in header if header.count(name) > 1})
    if repeated:
        raise TrainingError(
            f"CSV file {source} repeats the column name(s) {', '.join(map(repr, repeated))}; "
            "every column needs a unique name."
        )
    try:
        frame = pd.read_csv(io.BytesIO(raw), sep=options.delimiter, encoding=options.encoding)
    except UnicodeDecodeError:
        raise _not_encoded(source, options.encoding) from None
    except pd.errors.EmptyDataError:
        raise TrainingError(f"CSV file {source} is empty; expected a header row and data rows.") from None
    except pd.errors.ParserError as exc:
        fields = re.search(r"Expected (\d+) fields in line (\d+), saw (\d+)", str(exc))
        if fields:
            expected, line, saw = fields.groups()
            raise TrainingError(f"CSV file {source} line {line} has {saw} fields; the header has {expected}.") from None
        raise TrainingError(f"CSV file {source} could not be parsed: {_first_line(exc)}.") from None
    frame.columns = [str(name) for name in frame.columns]
    return frame


def _not_encoded(source: str, encoding: str) -> TrainingError:
    return TrainingError(
        f"{source} is not {encoding.upper()} text; save it as UTF-8 CSV, or pass its encoding "
        "(e.g. --encoding latin-1)."
    )


def _first_line(exc: Exception) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0].rstrip(".")


# Column decisions.


@dataclass(frozen=True)
class Column:
    """What training makes of one column: a feature (`feature`) or an exclusion (`excluded`)."""

    name: str
    feature: Feature | None = None
    excluded: str | None = None


def decide_columns(frame: Any, target: str, options: TableOptions) -> list[Column]:
    """Every column but the target, in table order: a feature, or excluded with the reason."""
    import pandas as pd

    names = list(frame.columns)
    for flag, chosen in (("--categorical", options.categorical), ("--drop", options.drop)):
        unknown = [name for name in chosen if name not in names]
        if unknown:
            raise TrainingError(
                f"{flag} names {', '.join(map(repr, unknown))}, which the table does not have; "
                f"its columns are {', '.join(names)}."
            )
        if target in chosen:
            raise TrainingError(f"{flag} names the target {target!r}; choose feature columns.")
    columns = []
    for name in names:
        if name == target:
            continue
        if name in options.drop:
            columns.append(Column(name, excluded="dropped with --drop"))
            continue
        series = frame[name]
        present = series.dropna()
        if present.empty:
            columns.append(Column(name, excluded="no values: every cell is missing"))
            continue
        dtype = series.dtype
        if pd.api.types.is_datetime64_any_dtype(dtype) or pd.api.types.is_timedelta64_dtype(dtype):
            raise _refuse_dates(name, str(present.iloc[0]))
        if name in options.categorical or pd.api.types.is_bool_dtype(dtype):
            columns.append(_categorical(name, series, options, explicit=True))
        elif pd.api.types.is_numeric_dtype(dtype):
            if _UNNAMED.match(name) and _is_row_number(present, len(series)):
                columns.append(Column(name, excluded="a row number (0, 1, 2, ... in order)"))
            else:
                columns.append(Column(name, Feature(name, NUMERIC)))
        else:
            columns.append(_text_column(name, series, present, options))
    return columns


def _is_row_number(present: Any, rows: int) -> bool:
    if len(present) != rows or rows < IDENTIFIER_MIN:
        return False
    values = present.to_numpy()
    if not np.issubdtype(values.dtype, np.integer):
        return False
    return bool(np.array_equal(values, np.arange(values[0], values[0] + rows)) and values[0] in (0, 1))


def _text_column(name: str, series: Any, present: Any, options: TableOptions) -> Column:
    kinds = {type(value) for value in present.head(10_000)}
    if not kinds <= {str}:
        odd = sorted(kind.__name__ for kind in kinds if kind is not str)
        if kinds <= {str, int, float, bool}:
            raise _refuse_mixed(name, present)
        raise TrainingError(
            f"Column {name!r} holds {', '.join(odd)} values, which cannot be a feature; convert it to numbers "
            f"or text, or drop it with --drop {name!r}."
        )
    sample = present.head(DATE_SAMPLE).astype(str)
    if sample.str.match(_DATE).mean() >= DATE_SHARE:
        raise _refuse_dates(name, sample.iloc[0])
    numeric_share = _numeric_share(present)
    if MIXED_NUMBER_SHARE <= numeric_share < 1:
        raise _refuse_mixed(name, present)
    distinct = present.nunique()
    if distinct >= IDENTIFIER_SHARE * len(present) and distinct > IDENTIFIER_MIN:
        return Column(name, excluded=f"identifier-like: {distinct} distinct values in {len(present)} rows")
    return _categorical(name, series, options, explicit=False)


def _numeric_share(present: Any) -> float:
    import pandas as pd

    return float(pd.to_numeric(present, errors="coerce").notna().mean())


def _categorical(name: str, series: Any, options: TableOptions, explicit: bool) -> Column:
    texts = category_texts(series.to_frame())[:, 0]
    categories = sorted({text for text in texts if text is not None})
    if len(categories) > options.max_categories:
        raise TrainingError(
            f"Column {name!r} has {len(categories)} distinct values, more than --max-categories "
            f"{options.max_categories}; drop it (--drop {name!r}), group its rare values into one, "
            "or raise --max-categories."
        )
    return Column(name, Feature(name, CATEGORICAL, tuple(categories)))


def _refuse_dates(name: str, example: str) -> TrainingError:
    return TrainingError(
        f"Column {name!r} holds dates (e.g. {example[:30]!r}), which this tool does not use as they are; "
        f"turn it into numbers (e.g. days since a reference date, or year and month columns) or --drop {name!r}."
    )


def _refuse_mixed(name: str, present: Any) -> TrainingError:
    import pandas as pd

    texts = present.astype(str)
    odd = texts[pd.to_numeric(texts, errors="coerce").isna()].unique()[:3]
    return TrainingError(
        f"Column {name!r} mixes numbers and text (e.g. {', '.join(repr(str(v)[:20]) for v in odd)}); "
        f"make those cells numbers or leave them blank (missing), or pass --categorical {name!r} "
        "to treat every value as a category."
    )


# The target.


def target_values(frame: Any, target: str, task: str | None) -> tuple[np.ndarray, str, np.ndarray]:
    """(labels or values of the rows that have a target, task, mask of those rows)."""
    import pandas as pd

    series = frame[target]
    has_target = series.notna().to_numpy()
    present = series[has_target]
    if present.empty:
        raise TrainingError(f"The target {target!r} has no values; every row's target is missing.")
    numeric = pd.api.types.is_numeric_dtype(present.dtype) and not pd.api.types.is_bool_dtype(present.dtype)
    values = present.to_numpy()
    whole = numeric and bool(np.all(np.mod(values.astype(np.float64), 1) == 0))
    if task is None:
        task = CLASSIFICATION if not numeric or (whole and present.nunique() <= MAX_INTEGER_CLASSES) else REGRESSION
    if task == REGRESSION:
        if not numeric:
            raise TrainingError(
                f"The target {target!r} is not numeric, so it cannot be a regression target; use --task classification."
            )
        return values.astype(np.float64), task, has_target
    if whole:
        return values.astype(np.int64), task, has_target
    return category_texts(present.to_frame())[:, 0].astype(object), task, has_target


# Putting it together.


def load_table(
    source: str, target: str, task: str | None = None, fmt: str | None = None, options: TableOptions = TableOptions()
) -> Dataset:
    """Read a table and decide its features; raises TrainingError with one line for any bad input."""
    frame, raw, fmt = read_table(source, table_format(source, fmt), options)
    kind = "Parquet file" if fmt == PARQUET else "CSV file"
    names = list(frame.columns)
    if target not in names:
        raise TrainingError(
            f"{kind} {source} has no column {target!r}; its columns are {', '.join(names)}. Check --target."
        )
    if len(frame) == 0:
        raise TrainingError(f"{kind} {source} has a header but no data rows.")
    columns = decide_columns(frame, target, options)
    features = [column.feature for column in columns if column.feature is not None]
    excluded = [{"name": column.name, "reason": column.excluded} for column in columns if column.excluded]
    if not features:
        shown = "; ".join(f"{entry['name']}: {entry['reason']}" for entry in excluded) or "it has only the target"
        raise TrainingError(f"{kind} {source} has no usable feature column ({shown}).")
    y, task, has_target = target_values(frame, target, task)
    duplicates = int(frame.duplicated().sum())
    X = frame.loc[has_target, [feature.name for feature in features]].reset_index(drop=True)
    report = DataReport(
        rows_read=len(frame),
        rows_used=len(X),
        rows_without_target=int((~has_target).sum()),
        duplicate_rows=duplicates,
    )
    return Dataset(
        X=X,
        y=y,
        feature_names=[feature.name for feature in features],
        target=target,
        task=task,
        source=f"{fmt}:{source if source.startswith('s3://') else source.rstrip('/').rsplit('/', 1)[-1]}",
        sha256=hashlib.sha256(raw).hexdigest(),
        schema=FeatureSchema(features),
        excluded_columns=excluded,
        report=report,
    )
