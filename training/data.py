"""Training data: a built-in scikit-learn dataset by name, or the user's CSV."""

from __future__ import annotations

import csv
import hashlib
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from lambda_forest.errors import TrainingError
from lambda_forest.manifest import CLASSIFICATION, REGRESSION

MIN_ROWS = 10
# A numeric target with at most this many distinct whole-number values is taken as class labels.
MAX_INTEGER_CLASSES = 20


@dataclass(frozen=True)
class Dataset:
    X: np.ndarray
    y: np.ndarray
    feature_names: list[str]
    target: str
    task: str
    source: str
    sha256: str

    @property
    def rows(self) -> int:
        return len(self.y)


def _builtin(loader_name: str, task: str, target: str) -> Callable[[], Dataset]:
    def load() -> Dataset:
        import sklearn.datasets

        bunch = getattr(sklearn.datasets, loader_name)()
        X = np.asarray(bunch.data, dtype=np.float64)
        if task == CLASSIFICATION:
            # Train on readable labels so predictions say "setosa", not 0.
            y = np.asarray(bunch.target_names)[bunch.target]
        else:
            y = np.asarray(bunch.target, dtype=np.float64)
        name = loader_name.removeprefix("load_")
        return Dataset(
            X=X,
            y=y,
            feature_names=[str(f) for f in bunch.feature_names],
            target=target,
            task=task,
            source=f"sklearn:{name}",
            sha256=_fingerprint(X, y),
        )

    return load


BUILTIN_DATASETS: dict[str, Callable[[], Dataset]] = {
    "iris": _builtin("load_iris", CLASSIFICATION, "species"),
    "wine": _builtin("load_wine", CLASSIFICATION, "cultivar"),
    "breast_cancer": _builtin("load_breast_cancer", CLASSIFICATION, "diagnosis"),
    "digits": _builtin("load_digits", CLASSIFICATION, "digit"),
    "diabetes": _builtin("load_diabetes", REGRESSION, "progression"),
}


def load_builtin(name: str) -> Dataset:
    if name not in BUILTIN_DATASETS:
        raise TrainingError(
            f"Unknown dataset {name!r}; choose one of {', '.join(BUILTIN_DATASETS)} or pass --csv PATH --target COLUMN."
        )
    return BUILTIN_DATASETS[name]()


def load_csv(path: Path, target: str, task: str | None = None) -> Dataset:
    """Read a CSV with a header row; every column but `target` must be numeric."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise TrainingError(f"CSV file {path} does not exist; check --csv.") from None
    except OSError as exc:
        raise TrainingError(f"CSV file {path} cannot be read: {exc.strerror}.") from None
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise TrainingError(f"CSV file {path} is not UTF-8 text; save it as UTF-8 CSV.") from None
    reader = csv.reader(text.splitlines())
    header = next(reader, None)
    if not header or not any(cell.strip() for cell in header):
        raise TrainingError(f"CSV file {path} is empty; expected a header row and data rows.")
    header = [cell.strip() for cell in header]
    if target not in header:
        raise TrainingError(
            f"CSV file {path} has no column {target!r}; its columns are {', '.join(header)}. Check --target."
        )
    if len(set(header)) != len(header):
        raise TrainingError(f"CSV file {path} repeats a column name; every column needs a unique name.")
    target_index = header.index(target)
    feature_names = [name for i, name in enumerate(header) if i != target_index]
    if not feature_names:
        raise TrainingError(f"CSV file {path} has only the target column; add feature columns.")

    features: list[list[float]] = []
    labels: list[str] = []
    for line, record in enumerate(reader, start=2):
        if not record or all(not cell.strip() for cell in record):
            continue
        if len(record) != len(header):
            raise TrainingError(f"CSV file {path} line {line} has {len(record)} fields; the header has {len(header)}.")
        row = []
        for i, cell in enumerate(record):
            if i == target_index:
                continue
            row.append(_number(cell, path, line, header[i]))
        labels.append(record[target_index].strip())
        features.append(row)

    X = np.asarray(features, dtype=np.float64).reshape(len(features), len(feature_names))
    task = task or infer_task(labels)
    y = _target_values(labels, task, path, target)
    return Dataset(
        X=X,
        y=y,
        feature_names=feature_names,
        target=target,
        task=task,
        source=f"csv:{path.name}",
        sha256=hashlib.sha256(raw).hexdigest(),
    )


def _number(cell: str, path: Path, line: int, column: str) -> float:
    try:
        value = float(cell)
    except ValueError:
        shown = cell.strip() or "empty"
        raise TrainingError(
            f"CSV file {path} line {line}, column {column!r}: {shown!r} is not a number; feature columns "
            "must be numeric (encode categories as numbers, fill or drop missing values)."
        ) from None
    if not math.isfinite(value):
        raise TrainingError(f"CSV file {path} line {line}, column {column!r}: {cell!r} is not a finite number.")
    return value


def infer_task(labels: list[str]) -> str:
    """Text labels or few whole numbers mean classification; other numbers mean regression."""
    try:
        values = [float(label) for label in labels]
    except ValueError:
        return CLASSIFICATION
    whole = all(value.is_integer() for value in values)
    return CLASSIFICATION if whole and len(set(values)) <= MAX_INTEGER_CLASSES else REGRESSION


def _target_values(labels: list[str], task: str, path: Path, target: str) -> np.ndarray:
    if any(not label for label in labels):
        raise TrainingError(f"CSV file {path}: column {target!r} has empty cells; every row needs a target.")
    if task == CLASSIFICATION:
        try:
            numbers = [float(label) for label in labels]
        except ValueError:
            return np.asarray(labels, dtype=object)
        if all(n.is_integer() for n in numbers):
            return np.asarray([int(n) for n in numbers], dtype=np.int64)
        return np.asarray(labels, dtype=object)
    try:
        return np.asarray([float(label) for label in labels], dtype=np.float64)
    except ValueError:
        raise TrainingError(
            f"CSV file {path}: column {target!r} is not numeric, so it cannot be a regression target; "
            "use --task classification."
        ) from None


def check_trainable(data: Dataset) -> None:
    """Refuse data that cannot give a meaningful model or hold-out evaluation."""
    if data.rows < MIN_ROWS:
        raise TrainingError(f"The data has {data.rows} rows; at least {MIN_ROWS} are needed to train and evaluate.")
    if data.task == CLASSIFICATION:
        classes, counts = np.unique(data.y.astype(str), return_counts=True)
        if len(classes) < 2:
            raise TrainingError(
                f"The target {data.target!r} has a single class ({classes[0]}); a classifier needs at least two."
            )
        if counts.min() < 2:
            rare = classes[counts.argmin()]
            raise TrainingError(
                f"Class {rare!r} of {data.target!r} has a single row; each class needs at least 2 rows "
                "for a stratified hold-out split."
            )


def _fingerprint(X: np.ndarray, y: np.ndarray) -> str:
    digest = hashlib.sha256(np.ascontiguousarray(X).tobytes())
    digest.update("\x1f".join(map(str, y.tolist())).encode())
    return digest.hexdigest()


def describe_features(data: Dataset) -> dict[str, dict[str, Any]]:
    """Per-feature min, max, mean and std of the training data (for drift checks and docs)."""
    return {
        name: {
            "min": float(column.min()),
            "max": float(column.max()),
            "mean": round(float(column.mean()), 6),
            "std": round(float(column.std()), 6),
        }
        for name, column in zip(data.feature_names, data.X.T, strict=True)
    }
