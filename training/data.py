"""Training data: a built-in scikit-learn dataset by name, or the user's table (`training.tables`)."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from lambda_forest.drift import summary_stats
from lambda_forest.errors import TrainingError
from lambda_forest.features import FeatureSchema, category_texts
from lambda_forest.manifest import CLASSIFICATION, REGRESSION

MIN_ROWS = 10
# A numeric target with at most this many distinct whole-number values is taken as class labels.
MAX_INTEGER_CLASSES = 20


# Quantile bins of each numeric feature's frozen training histogram (for drift checks).
HISTOGRAM_BINS = 10


@dataclass(frozen=True)
class DataReport:
    """What happened to the rows between the file and the model (the manifest's `data_report`)."""

    rows_read: int
    rows_used: int
    rows_without_target: int = 0
    duplicate_rows: int = 0

    def to_dict(self) -> dict[str, int]:
        return asdict(self)


@dataclass(frozen=True)
class Dataset:
    """Training rows: X is a numpy matrix (built-in data) or a pandas DataFrame of the table's raw columns."""

    X: Any
    y: np.ndarray
    feature_names: list[str]
    target: str
    task: str
    source: str
    sha256: str
    schema: FeatureSchema | None = None  # None: every feature numeric
    excluded_columns: list[dict[str, str]] = field(default_factory=list)
    report: DataReport | None = None

    def __post_init__(self) -> None:
        if self.schema is None:
            object.__setattr__(self, "schema", FeatureSchema.numeric(self.feature_names))
        if self.report is None:
            object.__setattr__(self, "report", DataReport(self.rows, self.rows, 0, _duplicates(self.X)))

    @property
    def rows(self) -> int:
        return len(self.y)

    @property
    def features(self) -> FeatureSchema:
        assert self.schema is not None
        return self.schema


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


def _duplicates(X: Any) -> int:
    if hasattr(X, "duplicated"):
        return int(X.duplicated().sum())
    return len(X) - len(np.unique(np.asarray(X), axis=0))


def _fingerprint(X: np.ndarray, y: np.ndarray) -> str:
    digest = hashlib.sha256(np.ascontiguousarray(X).tobytes())
    digest.update("\x1f".join(map(str, y.tolist())).encode())
    return digest.hexdigest()


def report_lines(data: Dataset) -> list[str]:
    """The data report printed before training: rows used and dropped, each column's type and gaps."""
    report = data.report
    assert report is not None
    lines = [
        f"data: {report.rows_read} rows read, {report.rows_used} used"
        + (
            f", {report.rows_without_target} without a target ({data.target!r}) dropped"
            if report.rows_without_target
            else ""
        )
        + f"; {report.duplicate_rows} duplicate row{'' if report.duplicate_rows == 1 else 's'}",
        f"  {'column':<24} {'type':<12} {'missing':>8}  categories",
    ]
    for entry in feature_entries(data):
        categories = str(len(entry["categories"])) if "categories" in entry else ""
        lines.append(f"  {entry['name']:<24} {entry['type']:<12} {entry['missing_rate']:>8.1%}  {categories}".rstrip())
    lines.extend(f"  excluded {column['name']}: {column['reason']}" for column in data.excluded_columns)
    return lines


def columns_of(data: Dataset) -> list[np.ndarray]:
    """Each feature's training values: float64 for numeric features (NaN missing), text or None for categorical."""
    columns = []
    for index, feature in enumerate(data.features.features):
        column = data.X.iloc[:, index] if hasattr(data.X, "iloc") else data.X[:, index]
        if feature.is_categorical:
            columns.append(category_texts(np.asarray(column, dtype=object).reshape(-1, 1))[:, 0])
        else:
            columns.append(np.asarray(column, dtype=np.float64))
    return columns


def feature_entries(data: Dataset) -> list[dict[str, Any]]:
    """The manifest's `features`: type, categories, missing share, statistics and the frozen histogram."""
    entries = []
    for feature, values in zip(data.features.features, columns_of(data), strict=True):
        entry: dict[str, Any] = {"name": feature.name, "type": feature.type}
        if feature.is_categorical:
            missing = np.array([value is None for value in values], dtype=bool)
            present, counts = np.unique(values[~missing].astype(str), return_counts=True)
            entry["categories"] = list(feature.categories)
            entry["missing_allowed"] = feature.missing_allowed
            entry["missing_rate"] = _share(missing.sum(), len(values))
            shares = dict(zip(present.tolist(), counts.tolist(), strict=True))
            entry["frequencies"] = {
                category: _share(shares.get(category, 0), len(values)) for category in feature.categories
            }
        else:
            missing = np.isnan(values)
            entry["missing_allowed"] = feature.missing_allowed
            entry["missing_rate"] = _share(missing.sum(), len(values))
            present = values[~missing]
            entry["stats"] = summary_stats(present)
            entry["bins"] = frozen_histogram(present)
        entries.append(entry)
    return entries


def describe_features(data: Dataset) -> dict[str, dict[str, Any]]:
    """Per numeric feature min, max, mean and std of the training data (the manifest's `feature_stats`)."""
    return {
        feature.name: summary_stats(values[~np.isnan(values)])
        for feature, values in zip(data.features.features, columns_of(data), strict=True)
        if not feature.is_categorical
    }


def frozen_histogram(values: np.ndarray) -> dict[str, list[float] | list[int]]:
    """About HISTOGRAM_BINS quantile bins: edges (ascending, distinct) and the training rows in each."""
    if not len(values):
        return {"edges": [], "counts": []}
    edges = np.unique(np.quantile(values, np.linspace(0, 1, HISTOGRAM_BINS + 1)))
    if len(edges) == 1:
        return {"edges": [float(edges[0]), float(edges[0])], "counts": [len(values)]}
    counts, _ = np.histogram(values, bins=edges)
    return {"edges": edges.tolist(), "counts": counts.tolist()}


def _share(count: int | np.integer, total: int) -> float:
    return round(float(count) / total, 6) if total else 0.0
