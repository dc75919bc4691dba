"""The feature schema and the row validator (lambda_forest.features): every value rule of shared/DESIGN.md section 3."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lambda_forest.errors import InvalidInstances
from lambda_forest.features import (
    CATEGORICAL,
    MAX_WARNINGS,
    MISSING_TOKENS,
    NUMERIC,
    Feature,
    FeatureSchema,
    category_text,
    category_texts,
)

SCHEMA = FeatureSchema(
    [
        Feature("region", CATEGORICAL, ("north", "south", "west")),
        Feature("income", NUMERIC),
        Feature("cylinders", CATEGORICAL, ("4", "6", "8")),
        Feature("owner", CATEGORICAL, ("False", "True")),
    ]
)
NAN = float("nan")


def matrix(rows: list[Any], **options: Any) -> np.ndarray:
    return SCHEMA.validate(rows, **options).matrix


def same(actual: np.ndarray, expected: list[list[float]]) -> bool:
    return np.array_equal(actual, np.array(expected, dtype=np.float64), equal_nan=True)


def test_categories_become_codes_and_null_becomes_nan() -> None:
    rows = [["south", 48200.5, "8", "True"], {"region": None, "income": None, "cylinders": None, "owner": None}]
    assert same(matrix(rows), [[1, 48200.5, 2, 1], [NAN, NAN, NAN, NAN]])


def test_numbers_and_booleans_match_categories_by_their_text() -> None:
    assert same(matrix([["west", 1, 4, True], ["north", 2, 6.0, False]]), [[2, 1, 0, 1], [0, 2, 1, 0]])


def test_unknown_categories_are_missing_and_reported() -> None:
    rows = SCHEMA.validate([["east", 1, "8", True], ["north", None, 5, True], ["x" * 100, 3, "4", True]])
    assert same(rows.matrix, [[NAN, 1, 2, 1], [0, NAN, NAN, 1], [NAN, 3, 0, 1]])
    assert [(w.row, w.feature, w.code) for w in rows.warnings] == [
        (0, "region", "unknown_category"),
        (1, "cylinders", "unknown_category"),
        (2, "region", "unknown_category"),
    ]
    assert rows.warnings[0].message == "'east' is not a category seen in training; treated as missing."
    assert rows.warnings[1].message.startswith("'5' is not a category")
    assert "'" + "x" * 40 + "...'" in rows.warnings[2].message  # the caller's value, cut short
    assert rows.unknown_categories == {"region": 2, "cylinders": 1}
    assert rows.missing == {"income": 1}
    assert (rows.missing_total, rows.unknown_total) == (1, 3)


def test_warnings_are_capped_with_a_count_of_the_rest() -> None:
    rows = SCHEMA.validate([["east", 1, "4", True]] * (MAX_WARNINGS + 7))
    shown = rows.warning_dicts()
    assert len(shown) == MAX_WARNINGS + 1
    assert shown[-1]["code"] == "more_warnings" and "7 more warning(s)" in shown[-1]["message"]
    assert rows.unknown_categories == {"region": MAX_WARNINGS + 7}


@pytest.mark.parametrize(
    ("row", "words"),
    [
        (["north", "48200", "4", True], "instances[0]['income'] is the string '48200'; expected a finite number"),
        (["north", True, "4", True], "instances[0]['income'] is a JSON boolean (true)"),
        (["north", {"v": 1}, "4", True], "instances[0]['income'] is a JSON object"),
        (["north", [1], "4", True], "instances[0]['income'] is a JSON array"),
        (["north", 1e39, "4", True], "beyond float32's range"),
        (["north", -(10**400), "4", True], "not finite"),
        ([["north"], 1, "4", True], "instances[0]['region'] is a JSON array; expected a category ('north', 'south'"),
        ([True, 1, "4", True], "instances[0]['region'] is a JSON boolean (true); expected a category"),
        (["north", 1, {"a": 1}, True], "instances[0]['cylinders'] is a JSON object"),
        (["north", 1, "4"], "instances[0] has 3 values; expected 4 (region, income, cylinders, owner)"),
        ("north", "instances[0] is a JSON string; expected a list of 4 values or an object"),
        ({"region": "north", "income": 1, "cylinders": "4"}, "instances[0] is missing feature(s) 'owner'"),
        ({"region": "north", "income": 1, "cylinders": "4", "owner": True, "x" * 99: 1}, "unknown feature(s)"),
    ],
)
def test_values_of_the_wrong_kind_are_refused_naming_row_and_feature(row: Any, words: str) -> None:
    with pytest.raises(InvalidInstances) as raised:
        SCHEMA.validate([["north", 1, "4", True], row])
    assert words.replace("instances[0]", "instances[1]") in raised.value.message
    assert "x" * 41 not in raised.value.message


def test_float32_limit_is_exactly_where_scikit_learn_refuses() -> None:
    largest = float(np.finfo(np.float32).max)
    assert matrix([["north", largest, "4", True]])[0, 1] == largest
    with pytest.raises(InvalidInstances, match="beyond float32"):
        matrix([["north", float(np.nextafter(largest, np.inf)) * (1 + 2**-23), "4", True]])


def test_a_model_published_before_features_takes_numbers_only() -> None:
    legacy = FeatureSchema.from_manifest(["a", "b"], None)
    assert same(legacy.validate([[1, 2.5]]).matrix, [[1, 2.5]])
    with pytest.raises(InvalidInstances, match=r"instances\[0\]\['b'\] is null; expected a finite number"):
        legacy.validate([[1, None]])


def test_row_labels_name_rows_as_the_caller_numbers_them() -> None:
    with pytest.raises(InvalidInstances, match=r"line 12\['income'\]"):
        SCHEMA.validate([["north", "x", "4", True]], row_label=lambda index: f"line {index + 12}")


def test_the_callers_rows_are_not_changed() -> None:
    row = ["south", 1, "4", True]
    SCHEMA.validate([row])
    assert row == ["south", 1, "4", True]


def test_text_cells_parse_numbers_and_pandas_missing_tokens() -> None:
    rows = SCHEMA.validate(
        [
            ["south", " 48200.5", "8", "True"],
            ["NA", "", "6.0", "None"],
            ["N/A", "nan", "4", ""],
            ["east", "1e3", "8", "x"],
        ],
        text=True,
    )
    assert same(rows.matrix, [[1, 48200.5, 2, 1], [NAN, NAN, 1, NAN], [NAN, NAN, 0, NAN], [NAN, 1000, 2, NAN]])
    assert rows.missing == {"region": 2, "income": 2, "owner": 2}
    assert rows.unknown_categories == {"region": 1, "owner": 1}


def test_text_cells_that_are_not_numbers_are_refused() -> None:
    with pytest.raises(InvalidInstances, match=r"instances\[0\]\['income'\] is 'about 5', not a number"):
        SCHEMA.validate([["south", "about 5", "8", "True"]], text=True)
    with pytest.raises(InvalidInstances, match="not finite"):
        SCHEMA.validate([["south", "inf", "8", "True"]], text=True)


def test_a_category_named_like_a_missing_token_is_a_category() -> None:
    schema = FeatureSchema([Feature("continent", CATEGORICAL, ("EU", "NA"))])
    assert same(schema.validate([["NA"], [""]], text=True).matrix, [[1], [NAN]])


def test_missing_tokens_are_pandas_defaults() -> None:
    from pandas._libs.parsers import STR_NA_VALUES

    assert frozenset(STR_NA_VALUES) == MISSING_TOKENS


@pytest.mark.parametrize(
    ("value", "text"),
    [
        ("a", "a"),
        (4, "4"),
        (4.0, "4"),
        (np.int64(-3), "-3"),
        (np.float64(2.5), "2.5"),
        (True, "True"),
        (1e300, "1e+300"),
    ],
)
def test_category_text(value: Any, text: str) -> None:
    assert category_text(value) == text


def test_category_texts_reads_dataframes_and_object_arrays_alike() -> None:
    import pandas as pd

    frame = pd.DataFrame({"n": [4, 6, None], "s": ["a", None, "b"]})
    expected = [["4", "a"], ["6", None], [None, "b"]]
    assert category_texts(frame).tolist() == expected
    assert category_texts(np.array([[4.0, "a"], [6, None], [NAN, "b"]], dtype=object)).tolist() == expected


def test_decode_gives_the_raw_values_a_pipeline_takes() -> None:
    rows = SCHEMA.validate([["east", 1.5, 8, True], [None, None, "4", False]])
    assert SCHEMA.decode(rows.matrix).tolist()[0] == [None, 1.5, "8", "True"]
    assert SCHEMA.decode(rows.matrix).tolist()[1][2:] == ["4", "False"]


def test_category_tables_round_trip_and_mismatches_are_seen() -> None:
    arrays = SCHEMA.category_arrays()
    assert SCHEMA.matches_category_arrays(arrays)
    assert not SCHEMA.matches_category_arrays({})
    other = FeatureSchema([Feature(f.name, f.type, f.categories[::-1]) for f in SCHEMA.features])
    assert not other.matches_category_arrays(arrays)
    assert FeatureSchema.numeric(["a"]).matches_category_arrays({})


@pytest.mark.parametrize(
    "features",
    [
        [],
        [Feature("a"), Feature("a")],
        [Feature("a", "text")],
        [Feature("a", CATEGORICAL, ())],
        [Feature("a", CATEGORICAL, ("x", "x"))],
    ],
)
def test_inconsistent_schemas_are_refused(features: list[Feature]) -> None:
    with pytest.raises(ValueError):
        FeatureSchema(features)


cells = (
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=5) | st.lists(st.integers(), max_size=2)
)


@settings(max_examples=300, deadline=None)
@given(rows=st.lists(st.lists(cells, min_size=4, max_size=4), min_size=1, max_size=5), text=st.booleans())
def test_any_row_is_encoded_or_refused_never_anything_else(rows: list[list[Any]], text: bool) -> None:
    try:
        result = SCHEMA.validate(rows, text=text)
    except InvalidInstances as error:
        assert error.status == 400 and error.message
        return
    assert result.matrix.shape == (len(rows), 4)
    assert not np.isinf(result.matrix.astype(np.float32)).any()
    codes = result.matrix[:, [0, 2, 3]]
    assert np.all(np.isnan(codes) | np.isin(codes, [0, 1, 2]))
