"""The features of a model and THE row validator (shared/DESIGN.md sections 2 and 3).

A model's `FeatureSchema` says, per input column in `feature_names` order, whether it is numeric or
categorical, its categories (strings, as seen in training) and whether a value may be missing. It is
built from the manifest (`Manifest.schema`); a manifest without `features` (numeric models published
before they existed) is all-numeric and takes no missing values, as it always did.

`FeatureSchema.validate` turns request rows (lists in `feature_names` order, or objects by feature
name) into the float64 matrix the forest reads, in model-input order: numbers as they are, each
categorical value as its category's code (its index in `categories`), NaN for a missing value and for
an unknown category (which the forest routes like a missing one). Unknown categories are reported as
warnings; values of the wrong kind are refused with `InvalidInstances`, naming the row and the feature.
Every protocol, file reader and tool validates rows here; numpy and the standard library only, as it
runs in the function.

Value rules (JSON rows):
- numeric feature: a number, or null for missing. A string, a boolean, an object or an array is refused,
  and so is a number beyond float32's range (scikit-learn refuses those; the forest reads float32).
- categorical feature: a string from `categories`; a number is matched by its text (`4` matches "4",
  `4.0` too); a boolean likewise ("True"/"False") when those are its categories; null is missing; any
  other string is an unknown category: treated as missing and reported.
With `text=True` (CSV bodies, batch files) cells are text: numeric features parse numeric text, and
the missing-value tokens pandas reads as missing by default (blank, NA, N/A, NaN, null, None, ...)
are missing; a categorical cell that is not a category but reads as a number matches by that number.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from lambda_forest.errors import InvalidInstances

NUMERIC = "numeric"
CATEGORICAL = "categorical"
FEATURE_TYPES = (NUMERIC, CATEGORICAL)

# pandas' default missing-value tokens (`pandas._libs.parsers.STR_NA_VALUES`), which training reads with.
MISSING_TOKENS = frozenset(
    {
        "",
        "#N/A",
        "#N/A N/A",
        "#NA",
        "-1.#IND",
        "-1.#QNAN",
        "-NaN",
        "-nan",
        "1.#IND",
        "1.#QNAN",
        "<NA>",
        "N/A",
        "NA",
        "NULL",
        "NaN",
        "None",
        "n/a",
        "nan",
        "null",
    }
)
# A response lists at most this many warnings; one more entry says how many were left out.
MAX_WARNINGS = 100
UNKNOWN_CATEGORY = "unknown_category"
MORE_WARNINGS = "more_warnings"
QUOTE_LIMIT = 40
# Integral floats up to this size are written as integers (4.0 -> "4"); beyond it floats are inexact.
_EXACT_INTEGERS = 2.0**53

_NUMBERS = frozenset((int, float))  # type(), not isinstance(): a bool is not a number here
_NUMBERS_OR_NULL = frozenset((int, float, type(None)))


def instances_row(index: int) -> str:
    """How messages name a row of a JSON `instances` list."""
    return f"instances[{index}]"


RowLabel = Callable[[int], str]


@dataclass(frozen=True)
class Feature:
    """One model input column."""

    name: str
    type: str = NUMERIC
    categories: tuple[str, ...] = ()
    missing_allowed: bool = True

    @property
    def is_categorical(self) -> bool:
        return self.type == CATEGORICAL

    def public(self) -> dict[str, Any]:
        body: dict[str, Any] = {"name": self.name, "type": self.type}
        if self.is_categorical:
            body["categories"] = list(self.categories)
        body["missing_allowed"] = self.missing_allowed
        return body


@dataclass(frozen=True)
class RowWarning:
    """Something about a row that did not stop its prediction (an unknown category)."""

    row: int | None
    feature: str | None
    code: str
    message: str

    def to_dict(self) -> dict[str, Any]:
        return {"row": self.row, "feature": self.feature, "code": self.code, "message": self.message}


@dataclass
class ValidatedRows:
    """Rows ready for the forest, and what validation noticed about them."""

    matrix: np.ndarray  # float64, (rows, features), model-input order
    warnings: list[RowWarning] = field(default_factory=list)
    missing: dict[str, int] = field(default_factory=dict)  # missing values per feature (nonzero only)
    unknown_categories: dict[str, int] = field(default_factory=dict)  # per feature (nonzero only)

    @property
    def missing_total(self) -> int:
        return sum(self.missing.values())

    @property
    def unknown_total(self) -> int:
        return sum(self.unknown_categories.values())

    def warning_dicts(self, limit: int = MAX_WARNINGS) -> list[dict[str, Any]]:
        """The warnings as a response shows them: the first `limit`, then one entry saying how many more."""
        shown = [warning.to_dict() for warning in self.warnings[:limit]]
        left_out = len(self.warnings) - limit
        if left_out > 0:
            counts = ", ".join(f"{name!r} {count}" for name, count in self.unknown_categories.items())
            shown.append(
                RowWarning(
                    None,
                    None,
                    MORE_WARNINGS,
                    f"{left_out} more warning(s) left out; unknown categories by feature: {counts}.",
                ).to_dict()
            )
        return shown


def category_text(value: Any) -> str:
    """The text a category value is known by: strings as they are, numbers by their shortest text.

    Training turns every value of a categorical column into this text, and serving matches a number sent
    for a categorical feature the same way, so a column pandas read as integers matches 4 and "4".
    """
    if isinstance(value, str):
        return value
    if isinstance(value, bool | np.bool_):
        return str(bool(value))
    if isinstance(value, int | np.integer):
        return str(int(value))
    if isinstance(value, float | np.floating):
        number = float(value)
        if number.is_integer() and abs(number) < _EXACT_INTEGERS:
            return str(int(number))
        return repr(number)
    return str(value)


def _is_missing_scalar(value: Any) -> bool:
    return value is None or (isinstance(value, float | np.floating) and value != value)


def category_texts(X: Any) -> np.ndarray:
    """Categorical cells as category text (None where missing): the first step of a model's Pipeline.

    Takes what a data scientist passes (a pandas DataFrame of the original columns) or what the function's
    scikit-learn path passes (a numpy object array); pandas is never imported here.
    """
    if hasattr(X, "isna") and hasattr(X, "to_numpy"):  # a pandas DataFrame or Series
        missing = np.asarray(X.isna().to_numpy(), dtype=bool)
        values = X.to_numpy(dtype=object)
    else:
        values = np.asarray(X, dtype=object)
        missing = None
    texts = np.empty(values.shape, dtype=object)
    for position, value in np.ndenumerate(values):
        gap = _is_missing_scalar(value) if missing is None else missing[position]
        texts[position] = None if gap else category_text(value)
    return texts


def quote(value: Any, limit: int = QUOTE_LIMIT) -> str:
    """A caller's value, quoted and cut short so a response never echoes a huge string back."""
    text = value if isinstance(value, str) else str(value)
    return repr(text if len(text) <= limit else text[:limit] + "...")


def json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list | tuple):
        return "array"
    return "object"


def names_shown(names: Sequence[str], limit: int = 8) -> str:
    shown = ", ".join(names[:limit])
    return shown + (f", ... ({len(names)} in all)" if len(names) > limit else "")


class FeatureSchema:
    """The model's input columns, and the one place rows are checked and encoded for it."""

    def __init__(self, features: Sequence[Feature]) -> None:
        names = [feature.name for feature in features]
        if not names:
            raise ValueError("a model needs at least one feature")
        if len(set(names)) != len(names):
            raise ValueError("feature names repeat")
        for feature in features:
            if feature.type not in FEATURE_TYPES:
                raise ValueError(f"feature {feature.name!r} has an unknown type {feature.type!r}")
            if feature.is_categorical and (
                not feature.categories
                or len(set(feature.categories)) != len(feature.categories)
                or not all(isinstance(category, str) for category in feature.categories)
            ):
                raise ValueError(f"feature {feature.name!r} needs distinct text categories")
            if feature.is_categorical and not feature.missing_allowed:
                raise ValueError(f"categorical feature {feature.name!r} must allow missing values")
        self.features = tuple(features)
        self.names = names
        self.width = len(names)
        self.positions = {name: index for index, name in enumerate(names)}
        # (column, feature, {category text: code}) for each categorical column.
        self._categorical = [
            (index, feature, {category: float(code) for code, category in enumerate(feature.categories)})
            for index, feature in enumerate(self.features)
            if feature.is_categorical
        ]
        self._numeric_columns = [index for index, feature in enumerate(self.features) if not feature.is_categorical]
        # The common case costs one set comparison per row; anything else is checked cell by cell.
        self._numeric_types = _NUMBERS_OR_NULL if all(f.missing_allowed for f in self.features) else _NUMBERS

    # Construction.

    @classmethod
    def numeric(cls, names: Iterable[str], missing_allowed: bool = True) -> FeatureSchema:
        return cls([Feature(str(name), NUMERIC, (), missing_allowed) for name in names])

    @classmethod
    def from_manifest(cls, feature_names: Sequence[str], features: Sequence[dict[str, Any]] | None) -> FeatureSchema:
        """The schema a manifest describes. Raises ValueError when `features` and `feature_names` disagree."""
        if features is None:  # published before `features` existed: numbers only, nothing missing
            return cls.numeric(feature_names, missing_allowed=False)
        if [entry.get("name") for entry in features] != list(feature_names):
            raise ValueError("features do not list feature_names in order")
        return cls(
            [
                Feature(
                    name=entry["name"],
                    type=entry.get("type", NUMERIC),
                    categories=tuple(entry.get("categories") or ()),
                    missing_allowed=bool(entry.get("missing_allowed", True)),
                )
                for entry in features
            ]
        )

    @property
    def categorical(self) -> list[Feature]:
        return [feature for _, feature, _ in self._categorical]

    @property
    def is_numeric_only(self) -> bool:
        return not self._categorical

    def public(self) -> list[dict[str, Any]]:
        return [feature.public() for feature in self.features]

    # Validation.

    def validate(
        self, instances: Sequence[Any], *, text: bool = False, row_label: RowLabel = instances_row
    ) -> ValidatedRows:
        """Rows (lists in `feature_names` order or objects by name) -> the forest's matrix, or InvalidInstances.

        `text=True` reads cells as text (CSV, files): see the module docstring.
        """
        width = self.width
        matrix = np.empty((len(instances), width), dtype=np.float64)
        categorical = self._categorical
        numeric_types = self._numeric_types
        unknown: list[tuple[int, int, Any]] = []
        for index, row in enumerate(instances):
            if type(row) is list:
                if len(row) != width:
                    raise InvalidInstances(
                        f"{row_label(index)} has {len(row)} values; expected {width} ({names_shown(self.names)})."
                    )
                values = row
            elif isinstance(row, dict):
                values = self._ordered(row, index, row_label)
            else:
                raise InvalidInstances(
                    f"{row_label(index)} is a JSON {json_type(row)}; expected a list of {width} values "
                    "or an object mapping each feature name to a value."
                )
            if categorical or text:
                values = list(values) if values is row else values  # never change the caller's row
                for column, feature, codes in categorical:
                    value = values[column]
                    code = codes.get(value) if type(value) is str else None
                    if code is None:
                        code = self._category_code(value, feature, codes, text, index, row_label)
                        if code is None and value is not None and not (text and value in MISSING_TOKENS):
                            unknown.append((index, column, value))
                    values[column] = code
                if text:
                    self._numbers_from_text(values, index, row_label)
            if not set(map(type, values)) <= numeric_types:
                self._check_cells(values, row_label(index))
            try:
                matrix[index] = values
            except OverflowError:  # an int beyond float64
                column = next(column for column, value in enumerate(values) if not _finite(value))
                self._refuse_number(row_label(index), column, values[column])
        self._check_float32_range(matrix, row_label)
        return self._summary(matrix, unknown)

    def _ordered(self, row: dict[str, Any], index: int, row_label: RowLabel) -> list[Any]:
        positions = self.positions
        unknown = [key for key in row if key not in positions]
        if unknown:
            raise InvalidInstances(
                f"{row_label(index)} has unknown feature(s) {', '.join(map(quote, unknown[:5]))}; "
                f"expected {names_shown(self.names)}."
            )
        if len(row) != self.width:
            missing = [name for name in self.names if name not in row]
            raise InvalidInstances(
                f"{row_label(index)} is missing feature(s) {', '.join(map(repr, missing[:5]))}"
                f"{' and more' if len(missing) > 5 else ''}."
            )
        return [row[name] for name in self.names]

    def _category_code(
        self, value: Any, feature: Feature, codes: dict[str, float], text: bool, index: int, row_label: RowLabel
    ) -> float | None:
        """The code of a value that is not one of the categories as it is: None means missing or unknown."""
        kind = type(value)
        if value is None:
            return None
        if kind is str:
            if text:
                if value in MISSING_TOKENS:
                    return None
                number = _parse_float(value)
                if number is not None:
                    return codes.get(category_text(number))
            return None
        if kind is int or kind is float:
            return codes.get(category_text(value))
        if kind is bool and str(value) in codes:
            return codes[str(value)]
        shown = ", ".join(map(quote, feature.categories[:5])) + (", ..." if len(feature.categories) > 5 else "")
        described = f"a JSON {json_type(value)}" + (f" ({str(value).lower()})" if kind is bool else "")
        raise InvalidInstances(
            f"{row_label(index)}[{feature.name!r}] is {described}; expected a category ({shown}) or null."
        )

    def _numbers_from_text(self, values: list[Any], index: int, row_label: RowLabel) -> None:
        """Numeric cells given as text become numbers (in place); float() first, as most cells are plain numbers."""
        for column in self._numeric_columns:
            cell = values[column]
            if type(cell) is str:
                try:
                    number = float(cell)
                except ValueError:
                    values[column] = self._number_from_text(cell, index, column, row_label)
                    continue
                if number != number and not self.features[column].missing_allowed:
                    self._refuse(row_label(index), column, None)
                values[column] = number

    def _number_from_text(self, cell: str, index: int, column: int, row_label: RowLabel) -> float | None:
        if cell in MISSING_TOKENS:
            if not self.features[column].missing_allowed:
                self._refuse(row_label(index), column, None)
            return None
        number = _parse_float(cell)
        if number is None:
            raise InvalidInstances(
                f"{row_label(index)}[{self.names[column]!r}] is {quote(cell)}, not a number; "
                "expected a number or an empty cell (missing)."
            )
        return number

    def _check_cells(self, values: list[Any], where: str) -> None:
        """Refuse the first cell that is neither a number nor an allowed missing value."""
        for column, value in enumerate(values):
            if type(value) in _NUMBERS or (value is None and self.features[column].missing_allowed):
                continue
            self._refuse(where, column, value)

    def _refuse(self, where: str, column: int, value: Any) -> None:
        feature = self.features[column]
        expected = "a finite number" + (" or null (missing)" if feature.missing_allowed else "")
        if value is None:
            raise InvalidInstances(f"{where}[{feature.name!r}] is null; expected {expected} (no missing values).")
        if isinstance(value, str):
            described = f"the string {quote(value)}"
        elif isinstance(value, bool):
            described = f"a JSON boolean ({str(value).lower()})"
        else:
            described = f"a JSON {json_type(value)}"
        raise InvalidInstances(f"{where}[{feature.name!r}] is {described}; expected {expected}.")

    def _refuse_number(self, where: str, column: int, value: float | int) -> None:
        name = self.names[column]
        if _finite(value):
            raise InvalidInstances(
                f"{where}[{name!r}] is {float(value):.6g}, beyond float32's range (about ±3.4e38); "
                "expected a finite number within it."
            )
        raise InvalidInstances(f"{where}[{name!r}] is not finite; expected a finite number.")

    def _check_float32_range(self, matrix: np.ndarray, row_label: RowLabel) -> None:
        """Refuse numbers the forest's float32 rows cannot hold (they would become infinity)."""
        with np.errstate(over="ignore"):
            infinite = np.isinf(matrix.astype(np.float32))
        if infinite.any():
            index, column = np.argwhere(infinite)[0]
            self._refuse_number(row_label(int(index)), int(column), float(matrix[index, column]))

    def _summary(self, matrix: np.ndarray, unknown: list[tuple[int, int, Any]]) -> ValidatedRows:
        rows = ValidatedRows(matrix)
        nan_counts = np.count_nonzero(np.isnan(matrix), axis=0) if matrix.size else np.zeros(self.width, int)
        unknown_by_column: dict[int, int] = {}
        for index, column, value in unknown:
            unknown_by_column[column] = unknown_by_column.get(column, 0) + 1
            rows.warnings.append(
                RowWarning(
                    index,
                    self.names[column],
                    UNKNOWN_CATEGORY,
                    f"{quote(category_text(value))} is not a category seen in training; treated as missing.",
                )
            )
        for column, count in enumerate(nan_counts.tolist()):
            missing = count - unknown_by_column.get(column, 0)
            if missing:
                rows.missing[self.names[column]] = missing
        rows.unknown_categories = {self.names[column]: count for column, count in sorted(unknown_by_column.items())}
        return rows

    # The other directions: raw values for a Pipeline, category tables for the compiled forest.

    def decode(self, matrix: np.ndarray) -> np.ndarray:
        """The raw rows a validated matrix stands for (object array): what a model Pipeline takes.

        Numbers stay numbers (NaN where missing); category codes become their text (None where missing
        or unknown, which the Pipeline's encoder also reads as missing).
        """
        raw = matrix.astype(object)
        for column, feature, _ in self._categorical:
            table = np.array([*feature.categories, None], dtype=object)
            codes = matrix[:, column]
            raw[:, column] = table[np.where(np.isnan(codes), len(feature.categories), codes).astype(np.intp)]
        return raw

    def values_read(self, validated: ValidatedRows, instances: Sequence[Any], rows: Sequence[int]) -> list[list[Any]]:
        """Some validated rows as the model read them, as JSON values in feature order (what a capture records).

        `validated` is what `validate` made of `instances`. Numbers are floats, a category is its text, a
        missing value is None, and an unknown category stays as sent (its text), so CSV cells and the same
        row in JSON read alike.
        """
        categories = [feature.categories if feature.is_categorical else None for feature in self.features]
        position = {row: index for index, row in enumerate(rows)}
        values = [
            [
                None if value != value else (value if known is None else known[int(value)])
                for value, known in zip(validated.matrix[row].tolist(), categories, strict=True)
            ]
            for row in rows
        ]
        for warning in validated.warnings:  # unknown categories: their text, not the missing value they became
            if warning.row in position and warning.feature is not None:
                row, column = instances[warning.row], self.positions[warning.feature]
                sent = row[column] if type(row) is list else row[warning.feature]
                values[position[warning.row]][column] = category_text(sent)
        return values

    def category_arrays(self) -> dict[str, np.ndarray]:
        """The category tables as plain numpy arrays (no pickle), for `forest.npz`."""
        categorical = self.categorical
        return {
            "categorical_features": np.array([self.positions[f.name] for f in categorical], dtype=np.int32),
            "category_counts": np.array([len(f.categories) for f in categorical], dtype=np.int32),
            "categories": np.array([c for f in categorical for c in f.categories], dtype=np.str_),
        }

    def matches_category_arrays(self, arrays: dict[str, np.ndarray]) -> bool:
        expected = self.category_arrays()
        present = {name: arrays.get(name) for name in expected}
        if all(value is None for value in present.values()):
            return self.is_numeric_only
        return all(
            value is not None and value.shape == expected[name].shape and np.array_equal(value, expected[name])
            for name, value in present.items()
        )


def _parse_float(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:
        return None


def _finite(value: int | float) -> bool:
    try:
        return math.isfinite(value)
    except OverflowError:  # an int too large for a float
        return False
